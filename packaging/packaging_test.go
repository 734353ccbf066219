package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDebVersion(t *testing.T) {
	mtime := time.Date(2026, 12, 4, 1, 57, 0, 0, time.UTC)
	tests := []struct{ describe, want string }{
		{"v1.2.0", "1.2.0"},
		{"1.2.0", "1.2.0"},
		{"v1.2.0-rc1", "1.2.0+rc1"},
		{"v1.2.0-3-gabcdef0", "1.2.0+3.gabcdef0"},
		{"v1.2.0-3-gabcdef0-dirty", "1.2.0+3.gabcdef0.dirty"},
		{"0985d59", "0.0~git20261204.0985d59"},
		{"abcdef0-dirty", "0.0~git20261204.abcdef0.dirty"},
	}
	for _, tt := range tests {
		b := build{version: tt.describe, mtime: mtime}
		if got := b.debVersion(); got != tt.want {
			t.Errorf("debVersion(%q) = %q, want %q", tt.describe, got, tt.want)
		}
	}
}

// fakeRoot copies what the packages take from the repository into a
// temporary directory, with a stand-in binary, and sets a file's mtime to
// now so that only the build's fixed time can make two runs agree.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range []string{
		"LICENSE", "README.md", "config.example.toml", "contrib/systemd/README.md",
		"contrib/systemd/mailgate.service", "contrib/systemd/mailgate.socket", "doc/architecture.md",
		"packaging/debian/preinst", "packaging/debian/postinst", "packaging/debian/prerm",
		"packaging/debian/postrm", "packaging/debian/sysusers.conf", "packaging/debian/tmpfiles.conf",
	} {
		data, err := os.ReadFile(filepath.Join("..", filepath.FromSlash(p)))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	bin := filepath.Join(root, "bin", "linux_amd64", "mailgate")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, []byte("\x7fELF stand-in"), 0o700); err != nil {
		t.Fatal(err)
	}
	return root
}

// TestReproducible builds the .deb and the archive twice, touching the
// sources in between, and wants the same bytes.
func TestReproducible(t *testing.T) {
	root := fakeRoot(t)
	mtime := time.Unix(1796349420, 0).UTC()
	outs := [2]map[string][]byte{}
	for i := range outs {
		b := build{root: root, out: t.TempDir(), version: "v1.2.0", mtime: mtime}
		debPath, err := b.deb("amd64")
		if err != nil {
			t.Fatalf("deb: %v", err)
		}
		tarPath, err := b.tar("amd64")
		if err != nil {
			t.Fatalf("tar: %v", err)
		}
		outs[i] = map[string][]byte{}
		for _, p := range []string{debPath, tarPath} {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			outs[i][filepath.Base(p)] = data
		}
		later := time.Now().Add(time.Hour)
		os.Chtimes(filepath.Join(root, "README.md"), later, later)
		os.Chmod(filepath.Join(root, "LICENSE"), 0o640)
	}
	for name, data := range outs[0] {
		if !bytes.Equal(data, outs[1][name]) {
			t.Errorf("%s differs between two builds", name)
		}
	}
	if _, ok := outs[0]["mailgate_1.2.0_amd64.deb"]; !ok {
		t.Errorf("no mailgate_1.2.0_amd64.deb among %v", outs[0])
	}

	// Every archive entry: root-owned, dated SOURCE_DATE_EPOCH.
	zr, err := gzip.NewReader(bytes.NewReader(outs[0]["mailgate_v1.2.0_linux_amd64.tar.gz"]))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "root" || !h.ModTime.Equal(mtime) {
			t.Errorf("%s: owner %d:%d %s, mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.ModTime)
		}
		if h.Name == "mailgate_v1.2.0_linux_amd64/mailgate" && h.Mode != 0o755 {
			t.Errorf("binary mode %o", h.Mode)
		}
	}
	if !strings.Contains(strings.Join(names, " "), "mailgate_v1.2.0_linux_amd64/contrib/systemd/mailgate.service") {
		t.Errorf("archive lacks the unit: %q", names)
	}
}

func TestPackagedUnit(t *testing.T) {
	b := build{root: ".."}
	unit, err := b.packagedUnit()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(unit), "\nExecStart=/usr/bin/mailgate run -c /etc/mailgate/config.toml\n") {
		t.Errorf("packaged unit does not run /usr/bin/mailgate")
	}
	if strings.Contains(string(unit), "/usr/local/bin") {
		t.Errorf("packaged unit still names /usr/local/bin")
	}
}
