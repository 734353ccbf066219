package mailparse

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// hashSink remembers the SHA-256 of what it read for each attachment.
type hashSink struct {
	mu   sync.Mutex
	sums map[int]string
}

// Put implements AttachmentSink.
func (s *hashSink) Put(_ context.Context, a *Attachment, r io.Reader) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sums[a.Index] = hex.EncodeToString(h.Sum(nil))
	return strconv.Itoa(a.Index), nil
}

// startsWithField reports whether the first line of b is a header field.
func startsWithField(b []byte) bool {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return isFieldLine(line)
}

func FuzzParse(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.eml"))
	if err != nil || len(files) == 0 {
		f.Fatalf("no seeds: %v", err)
	}
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(nestingBomb(60)))
	f.Add([]byte(attachmentsMail(seq(300, 1), seq(5, 2))))
	f.Add([]byte("From: a@b\n\n"))
	f.Add([]byte("Content-Type: multipart/mixed; boundary=x\n\n--x\n--x--\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		s := &hashSink{sums: map[int]string{}}
		opts := Options{MaxAttachmentSize: 512, MaxAttachments: 3, MaxTextSize: 4096, MaxDepth: 8, Sink: s}
		e, err := Parse(context.Background(), bytes.NewReader(raw), opts)
		if err != nil {
			if !errors.Is(err, ErrNoHeader) {
				t.Fatalf("unexpected error: %v", err)
			}
			if startsWithField(raw) {
				t.Fatalf("error for input starting with a header field: %v", err)
			}
			return
		}
		if e.Size != int64(len(raw)) {
			t.Errorf("Size = %d, input %d", e.Size, len(raw))
		}
		for name, v := range map[string]string{"Text": e.Text, "HTML": e.HTML, "Subject": e.Subject} {
			if !utf8.ValidString(v) {
				t.Errorf("%s is not valid UTF-8: %q", name, v)
			}
			if strings.IndexByte(v, 0) >= 0 {
				t.Errorf("%s contains NUL", name)
			}
		}
		if int64(len(e.Text)) > opts.MaxTextSize || int64(len(e.HTML)) > opts.MaxTextSize {
			t.Errorf("text over limit: %d, %d", len(e.Text), len(e.HTML))
		}
		if len(e.Problems) > maxProblems+2 {
			t.Errorf("%d problems", len(e.Problems))
		}
		for i, a := range e.Attachments {
			if a.Index != i+1 || a.Filename == "" || len(a.Filename) > maxFilename || strings.ContainsAny(a.Filename, "/\\\x00") || strings.HasPrefix(a.Filename, ".") {
				t.Errorf("bad attachment %+v", a)
			}
			if a.Ref != "" {
				if a.Skipped != "" || a.Size > opts.MaxAttachmentSize || s.sums[a.Index] != a.SHA256 {
					t.Errorf("stored attachment %+v, sink saw %s", a, s.sums[a.Index])
				}
			}
		}
	})
}

// sizedReader returns its data in reads of the given sizes, in turn.
type sizedReader struct {
	data  []byte
	sizes []byte
	i     int
}

func (r *sizedReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := len(r.data)
	if len(r.sizes) > 0 {
		n = min(n, int(r.sizes[r.i%len(r.sizes)])*37+1)
		r.i++
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	return n, nil
}

// Decoding runs of complete lines at once gives the bytes and the count of
// bad bytes that decoding each line on its own gives, however the input is
// cut into reads.
func FuzzBase64Lines(f *testing.F) {
	f.Add([]byte("aGVs\r\nbG8=\r\n"), []byte{3})
	f.Add([]byte("aGk=\r\naGk=\r\nQQ\r\n==\r\n"), []byte{0, 1})
	f.Add([]byte("aGVs\r\n!!not base64!!\r\nbG8=\r\naGVsbG8_-w==\n"), []byte{})
	f.Add([]byte("aGVsbG\r\n8=\r\nQQ=\r\n=\r\nQUFB\n"), []byte{1})
	f.Fuzz(func(t *testing.T, in, sizes []byte) {
		decode := func(lineByLine bool) ([]byte, int) {
			d := newBase64Reader(&sizedReader{data: in, sizes: sizes})
			d.lineByLine = lineByLine
			out, err := io.ReadAll(d)
			if err != nil {
				t.Fatal(err)
			}
			return out, d.badBytes()
		}
		got, gotBad := decode(false)
		want, wantBad := decode(true)
		if !bytes.Equal(got, want) || gotBad != wantBad {
			t.Fatalf("%q: runs of lines give %q (bad %d), line by line %q (bad %d)", in, got, gotBad, want, wantBad)
		}
	})
}

// FuzzNormaliseBytes checks that the one-pass normaliseBytes gives what
// normaliseText gives for the same bytes, and that decodeText's shortcut
// for text kept as is (keptAsIs) gives what decodeCharset and
// normaliseText give.
func FuzzNormaliseBytes(f *testing.F) {
	for _, s := range []string{"", "a\r\nb", "\uFEFFx\r\r\n\n", "\r\x00\nz", "\x00\uFEFF\r", "caf\xc3\xa9\r\n", "\xff\r\n", "a\rb\r"} {
		f.Add([]byte(s), "utf-8")
		f.Add([]byte(s), "")
		f.Add([]byte(s), "iso-8859-1")
	}
	f.Fuzz(func(t *testing.T, b []byte, cs string) {
		want, wantNul := normaliseText(string(b))
		got, gotNul := normaliseBytes(bytes.Clone(b))
		if got != want || gotNul != wantNul {
			t.Fatalf("normaliseBytes(%q) = %q, %v; normaliseText: %q, %v", b, got, gotNul, want, wantNul)
		}
		if keptAsIs(cs, b) {
			res := decodeCharset(cs, b)
			if res.text != string(b) || res.repaired || res.unknown {
				t.Fatalf("keptAsIs(%q, %q), but decodeCharset gives %+v", cs, b, res)
			}
		}
	})
}

// TestReadAllHint reads inputs shorter, as long as and longer than the
// hint, as io.ReadAll does.
func TestReadAllHint(t *testing.T) {
	for _, tt := range []struct {
		n    int
		hint int64
	}{{0, 0}, {10, 0}, {511, 512}, {512, 512}, {513, 512}, {5000, 1000}, {100, 1 << 20}} {
		in := bytes.Repeat([]byte("x"), tt.n)
		got, err := readAllHint(iotest.OneByteReader(bytes.NewReader(in)), tt.hint)
		if err != nil || !bytes.Equal(got, in) {
			t.Errorf("readAllHint(%d bytes, hint %d) = %d bytes, %v", tt.n, tt.hint, len(got), err)
		}
	}
	boom := errors.New("boom")
	got, err := readAllHint(io.MultiReader(strings.NewReader("abc"), iotest.ErrReader(boom)), 2)
	if string(got) != "abc" || err != boom {
		t.Errorf("readAllHint with a failing reader = %q, %v; want \"abc\", boom", got, err)
	}
}

// TestTrimEOL: trimEOL trims as bytes.TrimRight(line, "\r\n").
func TestTrimEOL(t *testing.T) {
	for _, s := range []string{"", "\r\n", "abc", "abc\r\n", "abc\n\r\n\r", "a\rb\n", "\n\nx", "ab= \r\n"} {
		if got, want := string(trimEOL([]byte(s))), string(bytes.TrimRight([]byte(s), "\r\n")); got != want {
			t.Errorf("trimEOL(%q) = %q, want %q", s, got, want)
		}
	}
}
