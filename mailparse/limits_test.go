package mailparse

import (
	"bytes"
	"context"
	"errors"
	"io"
	"runtime"
	"strings"
	"testing"
)

// headerBomb returns a message whose header block (the message's own, or a
// MIME part's) holds n tiny fields.
func headerBomb(n int, inPart bool) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@example.com\r\n")
	if inPart {
		b.WriteString("Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n")
	}
	for range n {
		b.WriteString("X: y\r\n")
	}
	b.WriteString("\r\nbody\r\n")
	if inPart {
		b.WriteString("--b1--\r\n")
	}
	return b.Bytes()
}

// TestParseHeaderTooLarge: a header block over MaxHeaderBytes, of the
// message or of a part, fails Parse with ErrHeaderTooLarge (so the email is
// dead-lettered with that reason) and costs little memory even at 40 MB.
func TestParseHeaderTooLarge(t *testing.T) {
	tests := []struct {
		name    string
		raw     []byte
		wantErr bool
	}{
		{"top header at the limit", headerBomb((MaxHeaderBytes-100)/6, false), false},
		{"top header over the limit", headerBomb(MaxHeaderBytes/6+10, false), true},
		{"top header bomb of 40 MB", headerBomb(40<<20/6, false), true},
		{"part header at the limit", headerBomb((MaxHeaderBytes-100)/6, true), false},
		{"part header bomb of 40 MB", headerBomb(40<<20/6, true), true},
		{"long body after a part is fine", []byte("From: a@example.com\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain\r\n\r\n" +
			strings.Repeat("body line without blank lines\r\n", 80000) + "--b1--\r\n" + strings.Repeat("epilogue\r\n", 200000)), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			_, err := Parse(context.Background(), bytes.NewReader(tt.raw), Options{})
			runtime.ReadMemStats(&after)
			if got := errors.Is(err, ErrHeaderTooLarge); got != tt.wantErr {
				t.Fatalf("Parse: %v, want ErrHeaderTooLarge %v", err, tt.wantErr)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; tt.wantErr && alloc > 160<<20 {
				t.Errorf("allocated %d MiB for a %d MiB message, want under 160 MiB", alloc>>20, len(tt.raw)>>20)
			}
		})
	}
}

// FuzzPartHeaderGuard: the guard passes every byte through unchanged
// until it fails, whatever the read sizes, and it fails exactly when a
// simple line-by-line scan finds a part header over the limit (a small
// limit here, so that fuzz inputs reach it).
func FuzzPartHeaderGuard(f *testing.F) {
	f.Add([]byte("--b\r\nA: b\r\n\r\nbody\r\n--b--\r\n"), uint8(3), uint8(40))
	f.Add([]byte("--b \r\nA: b\r\nC: d\r\n"), uint8(1), uint8(8))
	f.Add([]byte("pre\n--b\nX: 1\nY: 2\n\n--b--\nepilogue epilogue\n"), uint8(2), uint8(5))
	f.Fuzz(func(t *testing.T, data []byte, chunk, limit uint8) {
		var failed error
		g := newPartHeaderGuard(&chunkReader{data: data, n: int(chunk) + 1}, "b", func(err error) { failed = err })
		g.max = int(limit)
		var out bytes.Buffer
		_, err := out.ReadFrom(g)
		if err == nil && !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("passed %q, want %q", out.Bytes(), data)
		}
		if (err != nil) != (failed != nil) {
			t.Fatalf("error %v, fail callback %v", err, failed)
		}
		if want := overLongPartHeader(data, "--b", int(limit)); want != errors.Is(err, ErrHeaderTooLarge) {
			t.Fatalf("%q with limit %d: error %v, want too large %v", data, limit, err, want)
		}
	})
}

// overLongPartHeader is the guard's rule, written plainly: after a
// delimiter line, the bytes up to and including the first empty line must
// not exceed limit.
func overLongPartHeader(data []byte, delim string, limit int) bool {
	inHeader, size := false, 0
	lines := bytes.SplitAfter(data, []byte("\n"))
	for _, line := range lines {
		if inHeader {
			size += len(line)
			if size > limit {
				return true
			}
		}
		content := bytes.TrimSuffix(line, []byte("\n"))
		terminated := len(content) < len(line)
		if !terminated {
			break
		}
		switch {
		case inHeader && len(bytes.Trim(content, "\r")) == 0:
			inHeader = false
		case !inHeader && bytes.HasPrefix(content, []byte(delim)) && len(content) <= len(delim)+64 &&
			len(bytes.TrimRight(content[len(delim):], " \t\r")) == 0:
			inHeader, size = true, 0
		}
	}
	return false
}

// chunkReader reads data n bytes at a time.
type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(b []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(c.n, len(b), len(c.data))
	copy(b, c.data[:k])
	c.data = c.data[k:]
	return k, nil
}

// BenchmarkPartHeaderGuard passes a multipart body with a 500 KB base64
// attachment (76-byte lines) through the guard, 32 KiB a read.
func BenchmarkPartHeaderGuard(b *testing.B) {
	var body bytes.Buffer
	body.WriteString("--b\r\nContent-Type: text/plain\r\n\r\nHello\r\n--b\r\nContent-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n")
	line := strings.Repeat("QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2d3h5ejAxMjM0", 1)[:76] + "\r\n"
	for body.Len() < 680<<10 {
		body.WriteString(line)
	}
	body.WriteString("--b--\r\n")
	data := body.Bytes()
	buf := make([]byte, 32<<10)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		g := newPartHeaderGuard(bytes.NewReader(data), "b", func(error) {})
		for {
			if _, err := g.Read(buf); err != nil {
				break
			}
		}
	}
}
