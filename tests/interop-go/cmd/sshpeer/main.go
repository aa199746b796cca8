// Command sshpeer is the Go x/crypto/ssh peer for tp-ssh's interop tests (the SSH stack
// Teleport itself uses). It speaks Teleport's tunnel profile: a `teleport-transport`
// channel, a `teleport-transport-dial` request with a raw JSON payload, then an echoed
// byte stream.
//
//	sshpeer server -host-key K -host-cert K-cert.pub -user-ca CA.pub [-rekey N]
//	    prints "port N", serves one connection, echoes each transport channel.
//	sshpeer client -addr A -user U -key K -cert K-cert.pub -host-ca CA.pub -bytes N [-rekey N]
//	    dials, sends N pseudo-random bytes through a transport channel, checks the echo.
package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/crypto/ssh"
)

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "sshpeer:", err)
		os.Exit(1)
	}
}

func readSigner(path string) ssh.Signer {
	b, err := os.ReadFile(path)
	must(err)
	s, err := ssh.ParsePrivateKey(b)
	must(err)
	return s
}

func readAuthorized(path string) ssh.PublicKey {
	b, err := os.ReadFile(path)
	must(err)
	k, _, _, _, err := ssh.ParseAuthorizedKey(b)
	must(err)
	return k
}

func certSigner(keyPath, certPath string) ssh.Signer {
	cert, ok := readAuthorized(certPath).(*ssh.Certificate)
	if !ok {
		must(fmt.Errorf("%s is not a certificate", certPath))
	}
	s, err := ssh.NewCertSigner(cert, readSigner(keyPath))
	must(err)
	return s
}

type dialReq struct {
	Address  string `json:"address,omitempty"`
	ConnType string `json:"conn_type"`
}

func server(args []string) {
	fs := flag.NewFlagSet("server", flag.ExitOnError)
	hostKey := fs.String("host-key", "", "")
	hostCert := fs.String("host-cert", "", "")
	userCA := fs.String("user-ca", "", "")
	rekey := fs.Uint64("rekey", 0, "")
	must(fs.Parse(args))
	ca := readAuthorized(*userCA)
	checker := &ssh.CertChecker{
		IsUserAuthority: func(k ssh.PublicKey) bool { return bytes.Equal(k.Marshal(), ca.Marshal()) },
	}
	cfg := &ssh.ServerConfig{PublicKeyCallback: checker.Authenticate}
	cfg.RekeyThreshold = *rekey
	cfg.AddHostKey(certSigner(*hostKey, *hostCert))
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(err)
	fmt.Printf("port %d\n", l.Addr().(*net.TCPAddr).Port)
	tcp, err := l.Accept()
	must(err)
	conn, chans, reqs, err := ssh.NewServerConn(tcp, cfg)
	must(err)
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "teleport-transport" {
			nc.Reject(ssh.UnknownChannelType, "unknown channel type")
			continue
		}
		ch, creqs, err := nc.Accept()
		must(err)
		req := <-creqs
		var dr dialReq
		if req == nil || req.Type != "teleport-transport-dial" || json.Unmarshal(req.Payload, &dr) != nil || dr.Address != "@remote-auth-server" {
			ch.Stderr().Write([]byte("bad dial request"))
			if req != nil {
				req.Reply(false, nil)
			}
			ch.Close()
			continue
		}
		req.Reply(true, nil)
		go ssh.DiscardRequests(creqs)
		go func() {
			io.Copy(ch, ch)
			ch.CloseWrite()
			ch.Close()
		}()
	}
	conn.Wait()
	fmt.Println("server done")
}

func client(args []string) {
	fs := flag.NewFlagSet("client", flag.ExitOnError)
	addr := fs.String("addr", "", "")
	user := fs.String("user", "alice", "")
	key := fs.String("key", "", "")
	cert := fs.String("cert", "", "")
	hostCA := fs.String("host-ca", "", "")
	n := fs.Int("bytes", 1<<20, "")
	rekey := fs.Uint64("rekey", 0, "")
	address := fs.String("address", "@remote-auth-server", "")
	must(fs.Parse(args))
	ca := readAuthorized(*hostCA)
	checker := &ssh.CertChecker{
		IsHostAuthority: func(k ssh.PublicKey, _ string) bool { return bytes.Equal(k.Marshal(), ca.Marshal()) },
	}
	cfg := &ssh.ClientConfig{
		User:            *user,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(certSigner(*key, *cert))},
		HostKeyCallback: checker.CheckHostKey,
		HostKeyAlgorithms: []string{
			ssh.CertAlgoED25519v01, ssh.CertAlgoECDSA256v01, ssh.CertAlgoRSASHA512v01, ssh.CertAlgoRSASHA256v01,
		},
	}
	cfg.RekeyThreshold = *rekey
	conn, err := ssh.Dial("tcp", *addr, cfg)
	must(err)
	ch, reqs, err := conn.OpenChannel("teleport-transport", nil)
	must(err)
	go ssh.DiscardRequests(reqs)
	payload, _ := json.Marshal(dialReq{Address: *address, ConnType: "node"})
	ok, err := ch.SendRequest("teleport-transport-dial", true, payload)
	must(err)
	if !ok {
		msg, _ := io.ReadAll(ch.Stderr())
		fmt.Printf("dial refused: %s\n", bytes.TrimSpace(msg))
		os.Exit(3)
	}
	want := sha256.New()
	go func() {
		buf := make([]byte, 64*1024)
		x := uint32(7)
		for sent := 0; sent < *n; {
			for i := range buf {
				x = x*1103515245 + 12345
				buf[i] = byte(x >> 16)
			}
			k := len(buf)
			if *n-sent < k {
				k = *n - sent
			}
			_, err := ch.Write(buf[:k])
			must(err)
			want.Write(buf[:k])
			sent += k
		}
		must(ch.CloseWrite())
	}()
	got := sha256.New()
	m, err := io.Copy(got, ch)
	must(err)
	if m != int64(*n) || !bytes.Equal(got.Sum(nil), want.Sum(nil)) {
		must(fmt.Errorf("echo mismatch: %d of %d bytes", m, *n))
	}
	conn.Close()
	fmt.Println("ok")
}

func main() {
	if len(os.Args) < 2 {
		must(fmt.Errorf("usage: sshpeer server|client ..."))
	}
	switch os.Args[1] {
	case "server":
		server(os.Args[2:])
	case "client":
		client(os.Args[2:])
	default:
		must(fmt.Errorf("unknown mode %q", os.Args[1]))
	}
}
