// Command packaging builds mailgate's Debian packages (with the nfpm
// library) and its release archives, reproducibly: every timestamp is
// $SOURCE_DATE_EPOCH, every file has a fixed mode and owner, and the entries
// come in a fixed order, so that one commit always gives the same bytes.
//
// It is its own module so that nfpm's dependencies stay out of the
// daemon's go.mod. The Makefile runs it (make deb, make dist):
//
//	go run . deb -root .. -out ../dist -version v1.2.0 -arch amd64 -arch arm64
//	go run . tar -root .. -out ../dist -version v1.2.0 -arch amd64 -arch arm64
//
// Both expect the binaries at ROOT/bin/linux_ARCH/mailgate.
package main

import (
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// archList is a repeatable -arch flag.
type archList []string

func (a *archList) String() string { return strings.Join(*a, ",") }

func (a *archList) Set(s string) error {
	switch s {
	case "amd64", "arm64":
		*a = append(*a, s)
		return nil
	}
	return fmt.Errorf("unsupported architecture %q (want amd64 or arm64)", s)
}

// build is what both commands need.
type build struct {
	root    string    // the repository
	out     string    // where the artifacts go
	version string    // git describe output, e.g. v1.2.0-3-gabcdef0-dirty
	mtime   time.Time // $SOURCE_DATE_EPOCH
}

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "packaging: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 || (args[0] != "deb" && args[0] != "tar") {
		return fmt.Errorf("usage: packaging deb|tar -root DIR -out DIR -version V -arch ARCH...")
	}
	cmd := args[0]
	fs := flag.NewFlagSet(cmd, flag.ContinueOnError)
	var b build
	var arches archList
	fs.StringVar(&b.root, "root", "..", "the mailgate repository")
	fs.StringVar(&b.out, "out", "../dist", "output `directory`")
	fs.StringVar(&b.version, "version", "", "version (git describe --tags --always --dirty)")
	fs.Var(&arches, "arch", "architecture: amd64 or arm64 (repeatable)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if b.version == "" || len(arches) == 0 {
		return fmt.Errorf("%s: -version and at least one -arch are required", cmd)
	}
	epoch := os.Getenv("SOURCE_DATE_EPOCH")
	sec, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return fmt.Errorf("SOURCE_DATE_EPOCH=%q: want the commit time in seconds since 1970 (git log -1 --format=%%ct)", epoch)
	}
	b.mtime = time.Unix(sec, 0).UTC()
	if err := os.MkdirAll(b.out, 0o755); err != nil {
		return err
	}
	for _, arch := range arches {
		var path string
		var err error
		if cmd == "deb" {
			path, err = b.deb(arch)
		} else {
			path, err = b.tar(arch)
		}
		if err != nil {
			return fmt.Errorf("%s %s: %w", cmd, arch, err)
		}
		fmt.Println(path)
	}
	return nil
}
