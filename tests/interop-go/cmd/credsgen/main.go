// Command credsgen writes Teleport credentials the way Teleport's own code lays them
// out, for tp's loaders to read: an identity file (identityfile.Write) and a tsh profile
// directory (profile.SaveToDir plus the key paths of utils/keypaths). The certificates
// carry a Teleport user identity (X.509 subject, SSH certificate extensions) signed by
// throwaway CAs made here.
//
// Usage: go run ./cmd/credsgen OUTDIR
//
// It prints a manifest (JSON) of what it wrote and what the certificates say, so the
// Rust side can assert that tp reads the same user, roles, logins, expiry and CAs.
package main

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/gravitational/teleport/api/identityfile"
	"github.com/gravitational/teleport/api/profile"
	"github.com/gravitational/teleport/api/utils/keypaths"
)

const (
	cluster = "example.com"
	proxy   = "proxy.example.com"
	user    = "alice"
)

var (
	roles  = []string{"access", "editor"}
	logins = []string{"alice", "root"}
	traits = map[string][]string{"logins": {"alice", "root"}}
	// The Teleport cluster of origin (1.3.9999.1.7), an ExtraNames attribute.
	oidTeleportCluster = asn1.ObjectIdentifier{1, 3, 9999, 1, 7}
)

type manifest struct {
	Reference    string   `json:"reference"`
	User         string   `json:"user"`
	Roles        []string `json:"roles"`
	Logins       []string `json:"logins"`
	Cluster      string   `json:"cluster"`
	Proxy        string   `json:"proxy"`
	NotBefore    string   `json:"not_before"`
	NotAfter     string   `json:"not_after"`
	IdentityFile string   `json:"identity_file"`
	ProfileDir   string   `json:"profile_dir"`
	CertFile     string   `json:"cert_file"`
	KeyFile      string   `json:"key_file"`
	CAFile       string   `json:"ca_file"`
	CACertSHA256 string   `json:"ca_cert_der_hex"`
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "credsgen:", err)
		os.Exit(1)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: credsgen OUTDIR")
		os.Exit(2)
	}
	out, err := filepath.Abs(os.Args[1])
	must(err)
	must(os.MkdirAll(out, 0o700))

	now := time.Now().UTC().Truncate(time.Second)
	notBefore, notAfter := now.Add(-time.Minute), now.Add(12*time.Hour)

	// The cluster's user CA (X.509) and host CA (SSH), and the user CA's SSH key.
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: cluster, Organization: []string{cluster}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	must(err)
	caCert, err := x509.ParseCertificate(caDER)
	must(err)
	_, userCASSHKey, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	userCASigner, err := ssh.NewSignerFromKey(userCASSHKey)
	must(err)
	hostCAPub, _, err := ed25519.GenerateKey(rand.Reader)
	must(err)
	hostCASSH, err := ssh.NewPublicKey(hostCAPub)
	must(err)

	// The user's key (ECDSA P-256 for both TLS and SSH, as the balanced suite's TLS key).
	userKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(err)
	userKeyDER, err := x509.MarshalPKCS8PrivateKey(userKey)
	must(err)
	userKeyPEM := pemBlock("PRIVATE KEY", userKeyDER)

	// X.509 user certificate with Teleport's identity subject.
	traitsJSON, err := json.Marshal(traits)
	must(err)
	subject := pkix.Name{
		CommonName:    user,
		Organization:  roles,
		Locality:      logins,
		StreetAddress: []string{cluster},
		PostalCode:    []string{string(traitsJSON)},
		ExtraNames:    []pkix.AttributeTypeAndValue{{Type: oidTeleportCluster, Value: cluster}},
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	must(err)
	leafTmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               subject,
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	leafDER, err := x509.CreateCertificate(rand.Reader, leafTmpl, caCert, userKey.Public(), caKey)
	must(err)
	leafPEM := pemBlock("CERTIFICATE", leafDER)
	caPEM := pemBlock("CERTIFICATE", caDER)

	// SSH user certificate with Teleport's extensions.
	sshPub, err := ssh.NewPublicKey(userKey.Public())
	must(err)
	rolesJSON, err := json.Marshal(map[string][]string{"roles": roles})
	must(err)
	sshCert := &ssh.Certificate{
		Key:             sshPub,
		Serial:          1,
		CertType:        ssh.UserCert,
		KeyId:           user,
		ValidPrincipals: append(append([]string{}, logins...), "-teleport-internal-join"),
		ValidAfter:      uint64(notBefore.Unix()),
		ValidBefore:     uint64(notAfter.Unix()),
		Permissions: ssh.Permissions{Extensions: map[string]string{
			"permit-pty":                "",
			"permit-port-forwarding":    "",
			"teleport-roles":            string(rolesJSON),
			"teleport-traits":           string(traitsJSON),
			"teleport-route-to-cluster": cluster,
		}},
	}
	must(sshCert.SignCert(rand.Reader, userCASigner))
	sshCertLine := ssh.MarshalAuthorizedKey(sshCert)
	hostCALine := []byte(fmt.Sprintf("@cert-authority *.%s %s", cluster, ssh.MarshalAuthorizedKey(hostCASSH)))

	// 1. Identity file, written by the reference writer.
	idPath := filepath.Join(out, "identity")
	must(identityfile.Write(&identityfile.IdentityFile{
		PrivateKey: userKeyPEM,
		Certs:      identityfile.Certs{SSH: sshCertLine, TLS: leafPEM},
		CACerts:    identityfile.CACerts{SSH: [][]byte{hostCALine}, TLS: [][]byte{caPEM}},
	}, idPath))

	// 2. A tsh profile directory (v17 layout), paths from utils/keypaths.
	profDir := filepath.Join(out, "tsh")
	p := &profile.Profile{WebProxyAddr: proxy + ":3080", SSHProxyAddr: proxy + ":3023", Username: user, SiteName: cluster, Dir: profDir}
	must(os.MkdirAll(profDir, 0o700))
	must(p.SaveToDir(profDir, true))
	files := map[string][]byte{
		keypaths.UserTLSKeyPath(profDir, proxy, user):       userKeyPEM,
		keypaths.TLSCertPath(profDir, proxy, user):          leafPEM,
		keypaths.UserSSHKeyPath(profDir, proxy, user):       userKeyPEM,
		keypaths.SSHCertPath(profDir, proxy, user, cluster): sshCertLine,
		keypaths.TLSCAsPathCluster(profDir, proxy, cluster): caPEM,
		filepath.Join(profDir, "known_hosts"):               hostCALine,
	}
	for path, data := range files {
		must(os.MkdirAll(filepath.Dir(path), 0o700))
		must(os.WriteFile(path, data, 0o600))
	}

	// 3. A key pair (cert, key, CA) as three files.
	certFile, keyFile, caFile := filepath.Join(out, "user.crt"), filepath.Join(out, "user.key"), filepath.Join(out, "ca.pem")
	must(os.WriteFile(certFile, leafPEM, 0o600))
	must(os.WriteFile(keyFile, userKeyPEM, 0o600))
	must(os.WriteFile(caFile, caPEM, 0o600))

	var _ crypto.Signer = userKey
	m := manifest{
		Reference: "github.com/gravitational/teleport/api", User: user, Roles: roles, Logins: logins,
		Cluster: cluster, Proxy: proxy, NotBefore: notBefore.Format(time.RFC3339), NotAfter: notAfter.Format(time.RFC3339),
		IdentityFile: idPath, ProfileDir: profDir, CertFile: certFile, KeyFile: keyFile, CAFile: caFile,
		CACertSHA256: fmt.Sprintf("%x", caDER),
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	must(enc.Encode(m))
}
