package main

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// version is set at link time with -ldflags "-X main.version=v1.2.3"
// (make build, make dist: git describe --tags --always --dirty).
var version = ""

// buildInfo is what mailgate knows about the build that made it. Empty
// fields are unknown.
type buildInfo struct {
	version   string // release version, or "devel"
	commit    string // vcs.revision
	modified  bool   // vcs.modified: built from a tree with uncommitted changes
	date      string // vcs.time: the commit's time, RFC 3339
	goVersion string
	platform  string // GOOS/GOARCH
}

// readBuildInfo combines the link-time version with what the Go toolchain
// recorded (debug.ReadBuildInfo). go build records vcs.revision, vcs.time
// and vcs.modified only when it builds inside a checkout with git
// available (-buildvcs=auto); a build from a source archive or with
// -buildvcs=false has none, and they are reported as unknown rather than
// guessed.
func readBuildInfo(linked string, info *debug.BuildInfo, ok bool) buildInfo {
	b := buildInfo{version: linked, goVersion: runtime.Version(), platform: runtime.GOOS + "/" + runtime.GOARCH}
	if ok {
		b.goVersion = info.GoVersion
		for _, s := range info.Settings {
			switch s.Key {
			case "vcs.revision":
				b.commit = s.Value
			case "vcs.time":
				b.date = s.Value
			case "vcs.modified":
				b.modified = s.Value == "true"
			}
		}
		// go install mailgate@v1.2.3 records the module version; a build
		// in a checkout records "(devel)" or a pseudo-version.
		if b.version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.version = info.Main.Version
		}
	}
	if b.version == "" {
		b.version = "devel"
	}
	return b
}

// short is the version for the log and the User-Agent: the release
// version, or "devel-" and the commit's first 12 hex digits.
func (b buildInfo) short() string {
	if b.version != "devel" || b.commit == "" {
		return b.version
	}
	s := "devel-" + b.commit[:min(12, len(b.commit))]
	if b.modified {
		s += "-dirty"
	}
	return s
}

// versionString returns the short version of the running binary.
func versionString() string {
	info, ok := debug.ReadBuildInfo()
	return readBuildInfo(version, info, ok).short()
}

// print writes the build information, one "key value" per line after the
// first, which is "mailgate VERSION".
func (b buildInfo) print(w io.Writer) {
	unknown := func(s, why string) string {
		if s == "" {
			return "unknown (" + why + ")"
		}
		return s
	}
	commit := unknown(b.commit, "built without VCS information")
	if b.modified {
		commit += " (with uncommitted changes)"
	}
	fmt.Fprintf(w, "mailgate %s\n", b.short())
	fmt.Fprintf(w, "commit   %s\n", commit)
	// With reproducible builds the build date is the commit's date
	// (SOURCE_DATE_EPOCH), not the wall clock of the build.
	fmt.Fprintf(w, "date     %s\n", unknown(b.date, "built without VCS information"))
	fmt.Fprintf(w, "go       %s %s\n", b.goVersion, b.platform)
}

func cmdVersion(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "version", "", "print the version, commit, commit date and Go version")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	info, ok := debug.ReadBuildInfo()
	readBuildInfo(version, info, ok).print(env.stdout)
	return nil
}
