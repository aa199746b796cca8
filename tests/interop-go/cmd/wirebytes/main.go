// Command wirebytes marshals the shared JSON fixtures with Teleport's reference Go types
// and prints the protobuf bytes, so tp's Rust encoder can be compared with them byte for
// byte.
//
// Usage: go run ./cmd/wirebytes FIXTURE_DIR
//
// Each fixture is {"message": "<proto message name>", "value": <Teleport JSON>}. The
// output is one JSON object: fixture file name -> {"message": ..., "hex": ...}.
package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"

	"github.com/gravitational/teleport/api/client/proto"
	"github.com/gravitational/teleport/api/types"
)

type marshaler interface {
	Marshal() ([]byte, error)
}

func newMessage(name string) (marshaler, error) {
	switch name {
	case "types.RoleV6":
		return &types.RoleV6{}, nil
	case "types.UserV2":
		return &types.UserV2{}, nil
	case "types.ProvisionTokenV2":
		return &types.ProvisionTokenV2{}, nil
	case "proto.UserCertsRequest":
		return &proto.UserCertsRequest{}, nil
	case "proto.PingResponse":
		return &proto.PingResponse{}, nil
	case "proto.ListRolesRequest":
		return &proto.ListRolesRequest{}, nil
	case "proto.ListRolesResponse":
		return &proto.ListRolesResponse{}, nil
	}
	return nil, fmt.Errorf("no reference type for message %q", name)
}

type fixture struct {
	Message string          `json:"message"`
	Value   json.RawMessage `json:"value"`
}

type result struct {
	Message string `json:"message"`
	Hex     string `json:"hex"`
}

func referenceVersion() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	for _, dep := range info.Deps {
		if dep.Path == "github.com/gravitational/teleport/api" {
			return dep.Version
		}
	}
	return "unknown"
}

func run(dir string) error {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return err
	}
	if len(paths) == 0 {
		return fmt.Errorf("no fixtures in %s", dir)
	}
	sort.Strings(paths)
	out := map[string]result{}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		var f fixture
		if err := json.Unmarshal(raw, &f); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		msg, err := newMessage(f.Message)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := json.Unmarshal(f.Value, msg); err != nil {
			return fmt.Errorf("%s: reference JSON decoding: %w", p, err)
		}
		b, err := msg.Marshal()
		if err != nil {
			return fmt.Errorf("%s: reference marshal: %w", p, err)
		}
		out[strings.TrimSuffix(filepath.Base(p), ".json")] = result{Message: f.Message, Hex: hex.EncodeToString(b)}
	}
	fmt.Fprintf(os.Stderr, "wirebytes: %d fixtures marshalled with github.com/gravitational/teleport/api %s\n", len(out), referenceVersion())
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: wirebytes FIXTURE_DIR")
		os.Exit(2)
	}
	if err := run(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "wirebytes:", err)
		os.Exit(1)
	}
}
