// Command credsload reads credentials with Teleport's reference loaders
// (client.LoadIdentityFile, client.LoadProfile, client.LoadKeyPair), builds their TLS
// and SSH client configurations, and prints what they hold as JSON, so the Rust side
// can check that files tp writes are read by Teleport's code as tp meant them.
//
// Usage:
//
//	go run ./cmd/credsload identity PATH
//	go run ./cmd/credsload profile DIR NAME
//	go run ./cmd/credsload keypair CERT KEY CA
package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/gravitational/teleport/api/client"
)

type report struct {
	Loader     string   `json:"loader"`
	User       string   `json:"user"`
	Roles      []string `json:"roles"`
	Logins     []string `json:"logins"`
	NotAfter   string   `json:"not_after"`
	ServerName string   `json:"server_name"`
	ALPN       []string `json:"alpn"`
	TrustedCAs int      `json:"trusted_cas"`
	SSHUser    string   `json:"ssh_user,omitempty"`
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "credsload:", err)
	os.Exit(1)
}

func main() {
	if len(os.Args) < 3 {
		fmt.Fprintln(os.Stderr, "usage: credsload identity PATH | profile DIR NAME | keypair CERT KEY CA")
		os.Exit(2)
	}
	var creds client.Credentials
	switch {
	case os.Args[1] == "identity" && len(os.Args) == 3:
		creds = client.LoadIdentityFile(os.Args[2])
	case os.Args[1] == "profile" && len(os.Args) == 4:
		creds = client.LoadProfile(os.Args[2], os.Args[3])
	case os.Args[1] == "keypair" && len(os.Args) == 5:
		creds = client.LoadKeyPair(os.Args[2], os.Args[3], os.Args[4])
	default:
		fmt.Fprintln(os.Stderr, "credsload: bad arguments")
		os.Exit(2)
	}
	tlsConfig, err := creds.TLSConfig()
	if err != nil {
		fail(fmt.Errorf("TLSConfig: %w", err))
	}
	var chain [][]byte
	switch {
	case len(tlsConfig.Certificates) > 0:
		chain = tlsConfig.Certificates[0].Certificate
	case tlsConfig.GetClientCertificate != nil:
		cert, err := tlsConfig.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			fail(fmt.Errorf("GetClientCertificate: %w", err))
		}
		chain = cert.Certificate
	}
	if len(chain) == 0 {
		fail(fmt.Errorf("TLSConfig has no client certificate"))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		fail(fmt.Errorf("client certificate: %w", err))
	}
	r := report{
		Loader:     os.Args[1],
		User:       leaf.Subject.CommonName,
		Roles:      leaf.Subject.Organization,
		Logins:     leaf.Subject.Locality,
		NotAfter:   leaf.NotAfter.UTC().Format(time.RFC3339),
		ServerName: tlsConfig.ServerName,
		ALPN:       tlsConfig.NextProtos,
	}
	if tlsConfig.RootCAs != nil {
		//nolint:staticcheck // Subjects is deprecated for system pools only.
		r.TrustedCAs = len(tlsConfig.RootCAs.Subjects())
	}
	if os.Args[1] != "keypair" {
		sshConfig, err := creds.SSHClientConfig()
		if err != nil {
			fail(fmt.Errorf("SSHClientConfig: %w", err))
		}
		r.SSHUser = sshConfig.User
	}
	if exp, ok := creds.(interface{ Expiry() (time.Time, bool) }); ok {
		if t, ok := exp.Expiry(); ok && t.UTC().Format(time.RFC3339) != r.NotAfter {
			fail(fmt.Errorf("Expiry() %s disagrees with the certificate's %s", t, r.NotAfter))
		}
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		fail(err)
	}
}
