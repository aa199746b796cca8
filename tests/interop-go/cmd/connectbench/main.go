// Command connectbench times what a program pays to start talking to a cluster with
// Teleport's reference Go client: client.New (which races the client's connection
// modes for the address) plus the first Ping, then Close. It is the Go side of the
// connect benchmark in `cargo xtask bench`.
//
// Usage: connectbench ADDR IDENTITY_FILE N
//
// It connects N times, one after another, and prints "mean_ns <nanoseconds>".
// CONNECTBENCH_INSECURE=1 skips verifying the web proxy's certificate during
// discovery and TLS routing (a test cluster's web certificate is signed by its own CA);
// the Auth server's certificate is still verified.
package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gravitational/teleport/api/client"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: connectbench ADDR IDENTITY_FILE N")
		os.Exit(2)
	}
	addr, identity := os.Args[1], os.Args[2]
	n, err := strconv.Atoi(os.Args[3])
	if err != nil || n < 1 {
		fmt.Fprintln(os.Stderr, "connectbench: N must be a positive integer")
		os.Exit(2)
	}
	insecure := os.Getenv("CONNECTBENCH_INSECURE") == "1"
	var total time.Duration
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		start := time.Now()
		clt, err := client.New(ctx, client.Config{
			Addrs:                    []string{addr},
			Credentials:              []client.Credentials{client.LoadIdentityFile(identity)},
			InsecureAddressDiscovery: insecure,
			DialTimeout:              10 * time.Second,
		})
		if err == nil {
			_, err = clt.Ping(ctx)
		}
		total += time.Since(start)
		if clt != nil {
			_ = clt.Close()
		}
		cancel()
		if err != nil {
			fmt.Fprintln(os.Stderr, "connectbench:", err)
			os.Exit(1)
		}
	}
	fmt.Printf("mean_ns %d\n", total.Nanoseconds()/int64(n))
}
