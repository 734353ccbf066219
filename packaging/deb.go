package main

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
)

// unitExec is the ExecStart= prefix of contrib/systemd/mailgate.service,
// written for a binary installed by hand; the package installs it in
// /usr/bin.
const unitExec = "ExecStart=/usr/local/bin/mailgate "

// releaseVersion matches a version from a release tag: v1.2.0, 1.2.0-rc1.
var releaseVersion = regexp.MustCompile(`^v?[0-9]+\.[0-9]+`)

// debVersion turns the output of git describe into a Debian version
// (deb-version(7)): v1.2.0 is 1.2.0, v1.2.0-3-gabcdef0-dirty (3 commits
// after the tag) is 1.2.0+3.gabcdef0.dirty, which sorts after 1.2.0. Without
// a tag, git describe --always gives a bare commit, which becomes
// 0.0~gitYYYYMMDD.abcdef0 so that it sorts by commit date and before any
// release.
func (b *build) debVersion() string {
	v := b.version
	if releaseVersion.MatchString(v) {
		v = strings.TrimPrefix(v, "v")
		if i := strings.IndexByte(v, '-'); i >= 0 {
			v = v[:i] + "+" + strings.ReplaceAll(v[i+1:], "-", ".")
		}
		return v
	}
	return "0.0~git" + b.mtime.Format("20060102") + "." + strings.ReplaceAll(v, "-", ".")
}

// deb writes OUT/mailgate_VERSION_ARCH.deb and returns its path.
func (b *build) deb(arch string) (string, error) {
	stage, err := os.MkdirTemp("", "mailgate-deb-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(stage)

	unit, err := b.packagedUnit()
	if err != nil {
		return "", err
	}
	unitPath := filepath.Join(stage, "mailgate.service")
	if err := os.WriteFile(unitPath, unit, 0o644); err != nil {
		return "", err
	}
	preinst, err := b.preinst(stage)
	if err != nil {
		return "", err
	}

	src := func(p string) string { return filepath.Join(b.root, filepath.FromSlash(p)) }
	file := func(from, to string, mode os.FileMode) *files.Content {
		return &files.Content{Source: from, Destination: to,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode, MTime: b.mtime}}
	}
	dir := func(to string, mode os.FileMode) *files.Content {
		return &files.Content{Type: files.TypeDir, Destination: to,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode | os.ModeDir, MTime: b.mtime}}
	}
	config := file(src("config.example.toml"), "/etc/mailgate/config.toml", 0o640)
	config.Type = files.TypeConfigNoReplace
	config.FileInfo.Group = "mailgate"

	const docs = "/usr/share/doc/mailgate/"
	contents := files.Contents{
		file(src("bin/linux_"+arch+"/mailgate"), "/usr/bin/mailgate", 0o755),
		file(unitPath, "/usr/lib/systemd/system/mailgate.service", 0o644),
		file(src("packaging/debian/sysusers.conf"), "/usr/lib/sysusers.d/mailgate.conf", 0o644),
		file(src("packaging/debian/tmpfiles.conf"), "/usr/lib/tmpfiles.d/mailgate.conf", 0o644),
		dir("/etc/mailgate", 0o755),
		config,
		file(src("LICENSE"), docs+"copyright", 0o644),
		file(src("README.md"), docs+"README.md", 0o644),
		file(src("contrib/systemd/README.md"), docs+"README.systemd.md", 0o644),
		// Optional socket activation: an example, not installed as a unit.
		file(src("contrib/systemd/mailgate.socket"), docs+"examples/mailgate.socket", 0o644),
		file(src("config.example.toml"), docs+"config.example.toml", 0o644),
	}
	docFiles, err := filepath.Glob(src("doc/*.md"))
	if err != nil {
		return "", err
	}
	for _, p := range docFiles { // Glob sorts
		contents = append(contents, file(p, docs+filepath.Base(p), 0o644))
	}

	info := &nfpm.Info{
		Name:          "mailgate",
		Arch:          arch,
		Platform:      "linux",
		Version:       b.debVersion(),
		VersionSchema: "none",
		Section:       "mail",
		Priority:      "optional",
		Maintainer:    "mailgate authors",
		Description: "bridge between a support mailbox and the Userlike Message Center\n" +
			"mailgate watches an IMAP mailbox, posts each verified customer email to a\n" +
			"Userlike Custom Channel, and mails the operators' replies back over SMTP,\n" +
			"threaded into the customer's conversation. Edit\n" +
			"/etc/mailgate/config.toml, then run: systemctl enable --now mailgate",
		License: "MIT",
		MTime:   b.mtime,
		Overridables: nfpm.Overridables{
			Contents: contents,
			Umask:    0o022,
			Scripts: nfpm.Scripts{
				PreInstall:  preinst,
				PostInstall: src("packaging/debian/postinst"),
				PreRemove:   src("packaging/debian/prerm"),
				PostRemove:  src("packaging/debian/postrm"),
			},
		},
	}
	info = nfpm.WithDefaults(info)
	path := filepath.Join(b.out, fmt.Sprintf("mailgate_%s_%s.deb", info.Version, arch))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := deb.Default.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	return path, f.Close()
}

// packagedUnit returns contrib/systemd/mailgate.service with ExecStart=
// pointing at /usr/bin/mailgate; the unit is otherwise shipped as it is.
func (b *build) packagedUnit() ([]byte, error) {
	path := filepath.Join(b.root, "contrib", "systemd", "mailgate.service")
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.Count(string(raw), unitExec) != 1 {
		return nil, fmt.Errorf("%s: want exactly one line starting %q", path, unitExec)
	}
	return []byte(strings.Replace(string(raw), unitExec, "ExecStart=/usr/bin/mailgate ", 1)), nil
}

// preinst writes the preinst script into dir, with the user line of
// debian/sysusers.conf in it, and returns its path: preinst runs before
// sysusers.conf is unpacked, and the two must not drift apart.
func (b *build) preinst(dir string) (string, error) {
	tmpl, err := os.ReadFile(filepath.Join(b.root, "packaging", "debian", "preinst"))
	if err != nil {
		return "", err
	}
	sysusers, err := os.ReadFile(filepath.Join(b.root, "packaging", "debian", "sysusers.conf"))
	if err != nil {
		return "", err
	}
	var line string
	for l := range strings.SplitSeq(string(sysusers), "\n") {
		if strings.HasPrefix(l, "u ") {
			line = l
		}
	}
	if line == "" || strings.Contains(line, "'") || strings.Count(string(tmpl), "@SYSUSERS@") != 1 {
		return "", fmt.Errorf("packaging/debian: preinst needs one @SYSUSERS@ and sysusers.conf one \"u \" line without quotes")
	}
	path := filepath.Join(dir, "preinst")
	return path, os.WriteFile(path, []byte(strings.Replace(string(tmpl), "@SYSUSERS@", line, 1)), 0o755)
}
