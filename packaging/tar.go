package main

import (
	"archive/tar"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
)

// tar writes OUT/mailgate_VERSION_linux_ARCH.tar.gz and returns its path.
// Every entry is owned by root (0:0), dated $SOURCE_DATE_EPOCH, with a
// fixed mode, in a fixed order; the gzip header carries no name and no
// time.
func (b *build) tar(arch string) (string, error) {
	name := fmt.Sprintf("mailgate_%s_linux_%s", b.version, arch)
	entries := []struct {
		src  string
		mode int64
	}{
		{"bin/linux_" + arch + "/mailgate", 0o755},
		{"LICENSE", 0o644},
		{"README.md", 0o644},
		{"config.example.toml", 0o644},
		{"contrib/systemd/README.md", 0o644},
		{"contrib/systemd/mailgate.service", 0o644},
		{"contrib/systemd/mailgate.socket", 0o644},
	}
	docs, err := filepath.Glob(filepath.Join(b.root, "doc", "*.md"))
	if err != nil {
		return "", err
	}
	for _, p := range docs { // Glob sorts
		entries = append(entries, struct {
			src  string
			mode int64
		}{"doc/" + filepath.Base(p), 0o644})
	}

	path := filepath.Join(b.out, name+".tar.gz")
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	zw, err := gzip.NewWriterLevel(f, gzip.BestCompression)
	if err != nil {
		f.Close()
		return "", err
	}
	tw := tar.NewWriter(zw)
	written := map[string]bool{} // directories already in the archive
	for i, e := range entries {
		dest := name + "/" + e.src
		if i == 0 {
			dest = name + "/mailgate"
		}
		if err := b.addFile(tw, filepath.Join(b.root, filepath.FromSlash(e.src)), dest, e.mode, written); err != nil {
			f.Close()
			return "", err
		}
	}
	if err := tw.Close(); err != nil {
		f.Close()
		return "", err
	}
	if err := zw.Close(); err != nil {
		f.Close()
		return "", err
	}
	return path, f.Close()
}

// addFile writes the directories above dest that are not yet in the
// archive, then the file src as dest.
func (b *build) addFile(tw *tar.Writer, src, dest string, mode int64, written map[string]bool) error {
	if err := b.addDir(tw, path.Dir(dest), written); err != nil {
		return err
	}
	fi, err := os.Stat(src)
	if err != nil {
		return err
	}
	hdr := b.header(dest, mode)
	hdr.Typeflag = tar.TypeReg
	hdr.Size = fi.Size()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	n, err := io.Copy(tw, in)
	if err == nil && n != fi.Size() {
		err = fmt.Errorf("changed while being archived")
	}
	if err != nil {
		return fmt.Errorf("%s: %w", src, err)
	}
	return nil
}

// addDir writes dir and its parents, those not yet written.
func (b *build) addDir(tw *tar.Writer, dir string, written map[string]bool) error {
	if dir == "." || written[dir] {
		return nil
	}
	if err := b.addDir(tw, path.Dir(dir), written); err != nil {
		return err
	}
	written[dir] = true
	hdr := b.header(dir+"/", 0o755)
	hdr.Typeflag = tar.TypeDir
	return tw.WriteHeader(hdr)
}

// header returns a tar header with the fixed owner and time.
func (b *build) header(name string, mode int64) *tar.Header {
	return &tar.Header{
		Name:    name,
		Mode:    mode,
		Uid:     0,
		Gid:     0,
		Uname:   "root",
		Gname:   "root",
		ModTime: b.mtime,
		Format:  tar.FormatPAX,
	}
}
