// Command clientcheck drives Teleport's reference Go client (client.New with
// client.LoadKeyPair, direct address) against a tp Auth server and reports each named
// case as JSON. It exits non-zero if any case fails.
//
// Usage: go run ./cmd/clientcheck ADDR CERT KEY CA admin OUTDIR | user | ping
//
// With CERT "-i", KEY is an identity file (client.LoadIdentityFile) and CA is ignored.
// With CERT "-p", KEY is a tsh profile directory (client.LoadProfile, its current
// profile) and CA is ignored.
//
// "admin" runs as the cluster's local admin identity: it creates the seed's api-role
// and api-user, exercises roles, users and tokens, and has the cluster sign
// certificates for a key pair it generates for api-user (GenerateUserCerts), writing
// them to OUTDIR (cert.pem, key.pem). "user" runs as api-user, whose role only allows
// reading roles. "ping" only connects and pings, as any user (to check a connection
// path).
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gravitational/trace"

	"github.com/gravitational/teleport/api/client"
	"github.com/gravitational/teleport/api/client/proto"
	"github.com/gravitational/teleport/api/types"
)

type result struct {
	Case  string `json:"case"`
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// watchRoles opens a watcher on roles, then creates and deletes a role and expects
// INIT, PUT and DELETE events for it, in that order.
func watchRoles(ctx context.Context, clt *client.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	w, err := clt.NewWatcher(ctx, types.Watch{Kinds: []types.WatchKind{{Kind: types.KindRole}}})
	if err != nil {
		return fmt.Errorf("NewWatcher: %w", err)
	}
	defer w.Close()
	next := func() (types.Event, error) {
		select {
		case e := <-w.Events():
			return e, nil
		case <-w.Done():
			return types.Event{}, fmt.Errorf("watcher closed: %v", w.Error())
		case <-ctx.Done():
			return types.Event{}, errors.New("timed out waiting for an event")
		}
	}
	if e, err := next(); err != nil || e.Type != types.OpInit {
		return fmt.Errorf("first event %v, %v; want INIT", e.Type, err)
	}
	role, err := types.NewRole("watched", types.RoleSpecV6{})
	if err != nil {
		return err
	}
	if _, err := clt.CreateRole(ctx, role); err != nil {
		return err
	}
	if e, err := next(); err != nil || e.Type != types.OpPut || e.Resource.GetName() != "watched" {
		return fmt.Errorf("after create: %v %v, %v; want PUT watched", e.Type, e.Resource, err)
	}
	if err := clt.DeleteRole(ctx, "watched"); err != nil {
		return err
	}
	if e, err := next(); err != nil || e.Type != types.OpDelete || e.Resource.GetName() != "watched" {
		return fmt.Errorf("after delete: %v %v, %v; want DELETE watched", e.Type, e.Resource, err)
	}
	return nil
}

// checkCerts verifies with Go's own parsers that the certificates carry api-user's
// Teleport identity.
func checkCerts(certs *proto.Certs) error {
	block, _ := pem.Decode(certs.TLS)
	if block == nil {
		return errors.New("TLS certificate is not PEM")
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return fmt.Errorf("TLS certificate: %w", err)
	}
	if cert.Subject.CommonName != "api-user" || len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != "api-role" {
		return fmt.Errorf("TLS subject %v", cert.Subject)
	}
	pub, _, _, _, err := ssh.ParseAuthorizedKey(certs.SSH)
	if err != nil {
		return fmt.Errorf("SSH certificate: %w", err)
	}
	sshCert, ok := pub.(*ssh.Certificate)
	if !ok || sshCert.KeyId != "api-user" || sshCert.CertType != ssh.UserCert {
		return fmt.Errorf("SSH certificate %#v", pub)
	}
	if _, ok := sshCert.Extensions["teleport-roles"]; !ok {
		return errors.New("SSH certificate has no teleport-roles extension")
	}
	if len(certs.TLSCACerts) == 0 || len(certs.SSHCACerts) == 0 {
		return errors.New("no CA certificates returned")
	}
	return nil
}

func main() {
	if len(os.Args) < 6 || (os.Args[5] == "admin") != (len(os.Args) == 7) {
		fmt.Fprintln(os.Stderr, "usage: clientcheck ADDR CERT KEY CA admin OUTDIR | user | ping")
		os.Exit(2)
	}
	addr, cert, key, ca, who := os.Args[1], os.Args[2], os.Args[3], os.Args[4], os.Args[5]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// CERT "-i" with KEY naming an identity file uses client.LoadIdentityFile instead.
	creds := client.LoadKeyPair(cert, key, ca)
	switch cert {
	case "-i":
		creds = client.LoadIdentityFile(key)
	case "-p":
		creds = client.LoadProfile(key, "")
	}
	clt, err := client.New(ctx, client.Config{
		Addrs:       []string{addr},
		Credentials: []client.Credentials{creds},
		// A test cluster's web certificate is signed by its own host CA, not a public
		// one: CLIENTCHECK_INSECURE=1 lets discovery and TLS routing through the web port
		// skip verifying it (the Auth server's certificate is still verified end to end).
		InsecureAddressDiscovery: os.Getenv("CLIENTCHECK_INSECURE") == "1",
		DialTimeout:              10 * time.Second,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "clientcheck: client.New:", err)
		os.Exit(1)
	}
	defer clt.Close()

	var results []result
	check := func(name string, err error) {
		r := result{Case: name, OK: err == nil}
		if err != nil {
			r.Error = err.Error()
		}
		results = append(results, r)
	}
	expect := func(name string, err error, is func(error) bool, kind string) {
		switch {
		case err == nil:
			check(name, fmt.Errorf("expected %s, got success", kind))
		case !is(err):
			check(name, fmt.Errorf("expected %s, got %T: %v", kind, trace.Unwrap(err), err))
		default:
			check(name, nil)
		}
	}

	ping, err := clt.Ping(ctx)
	if err == nil && ping.ClusterName == "" {
		err = errors.New("ping returned no cluster name")
	}
	check("ping", err)

	switch who {
	case "admin":
		role, err := types.NewRoleWithVersion("api-role", types.V5, types.RoleSpecV6{
			Allow: types.RoleConditions{Rules: []types.Rule{types.NewRule(types.KindRole, []string{types.VerbRead})}},
		})
		if err != nil {
			check("build role", err)
			break
		}
		_, err = clt.CreateRole(ctx, role)
		check("create role", err)
		_, err = clt.CreateRole(ctx, role)
		expect("create role again is AlreadyExists", err, trace.IsAlreadyExists, "AlreadyExists")
		got, err := clt.GetRole(ctx, "api-role")
		if err == nil && got.GetVersion() != types.V5 {
			err = fmt.Errorf("role version %q, want v5", got.GetVersion())
		}
		check("get role", err)
		_, err = clt.UpsertRole(ctx, role)
		check("upsert role", err)
		roles, err := clt.GetRoles(ctx)
		if err == nil && len(roles) == 0 {
			err = errors.New("no roles listed")
		}
		check("get roles (ListRoles pages)", err)
		_, err = clt.GetRole(ctx, "no-such-role")
		expect("get missing role is NotFound", err, trace.IsNotFound, "NotFound")
		err = clt.DeleteRole(ctx, "no-such-role")
		expect("delete missing role is NotFound", err, trace.IsNotFound, "NotFound")

		user, err := types.NewUser("api-user")
		if err != nil {
			check("build user", err)
			break
		}
		user.SetRoles([]string{"api-role"})
		_, err = clt.CreateUser(ctx, user)
		check("create user (UsersService)", err)
		_, err = clt.CreateUser(ctx, user)
		expect("create user again is AlreadyExists", err, trace.IsAlreadyExists, "AlreadyExists")
		u, err := clt.GetUser(ctx, "api-user", false)
		if err == nil && len(u.GetRoles()) != 1 {
			err = fmt.Errorf("user roles %v", u.GetRoles())
		}
		check("get user", err)
		users, err := clt.GetUsers(ctx, false)
		if err == nil && len(users) != 1 {
			err = fmt.Errorf("%d users listed, want 1", len(users))
		}
		check("get users (ListUsers pages)", err)

		check("watcher sees a role put and delete", watchRoles(ctx, clt))

		// Certificates for api-user's new key pair, as tctl auth sign asks for them.
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			check("generate key", err)
			break
		}
		pkix, _ := x509.MarshalPKIXPublicKey(priv.Public())
		sshPub, _ := ssh.NewPublicKey(priv.Public())
		certs, err := clt.GenerateUserCerts(ctx, proto.UserCertsRequest{
			Username:     "api-user",
			TLSPublicKey: pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pkix}),
			SSHPublicKey: ssh.MarshalAuthorizedKey(sshPub),
			Expires:      time.Now().Add(time.Hour),
		})
		if err == nil {
			err = checkCerts(certs)
		}
		check("generate user certs for api-user", err)
		if err == nil {
			keyDER, _ := x509.MarshalPKCS8PrivateKey(priv)
			if werr := os.WriteFile(filepath.Join(os.Args[6], "cert.pem"), certs.TLS, 0o600); werr != nil {
				check("write cert", werr)
			}
			if werr := os.WriteFile(filepath.Join(os.Args[6], "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); werr != nil {
				check("write key", werr)
			}
		}

		tok, err := types.NewProvisionToken("6f1b2a7c9e0d4f3a", types.SystemRoles{types.RoleNode}, time.Now().Add(time.Hour))
		if err != nil {
			check("build token", err)
			break
		}
		check("create token", clt.CreateToken(ctx, tok))
		_, err = clt.GetToken(ctx, "6f1b2a7c9e0d4f3a")
		check("get token", err)
		check("delete token", clt.DeleteToken(ctx, "6f1b2a7c9e0d4f3a"))
		_, err = clt.GetToken(ctx, "6f1b2a7c9e0d4f3a")
		expect("get deleted token is NotFound", err, trace.IsNotFound, "NotFound")
	case "user":
		_, err := clt.GetRole(ctx, "api-role")
		check("api-user reads api-role", err)
		_, err = clt.GetUsers(ctx, false)
		expect("api-user listing users is AccessDenied", err, trace.IsAccessDenied, "AccessDenied")
		role, _ := types.NewRole("escalate", types.RoleSpecV6{})
		_, err = clt.CreateRole(ctx, role)
		expect("api-user creating a role is AccessDenied", err, trace.IsAccessDenied, "AccessDenied")
	case "ping":
	default:
		fmt.Fprintln(os.Stderr, "clientcheck: who must be admin, user or ping")
		os.Exit(2)
	}

	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(results)
	for _, r := range results {
		if !r.OK {
			os.Exit(1)
		}
	}
}
