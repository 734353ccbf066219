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

// FuzzPartHeaderGuard: the guard passes every byte through unchanged until
// it fails, and it fails only when a part header really is over the limit
// (checked here with a small limit by a plain line scan).
func FuzzPartHeaderGuard(f *testing.F) {
	f.Add([]byte("--b\r\nA: b\r\n\r\nbody\r\n--b--\r\n"), uint8(3))
	f.Add([]byte("--b \r\nA: b\r\nC: d\r\n"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		var failed error
		g := newPartHeaderGuard(&chunkReader{data: data, n: int(chunk) + 1}, "b", func(err error) { failed = err })
		var out bytes.Buffer
		_, err := out.ReadFrom(g)
		if err == nil && !bytes.Equal(out.Bytes(), data) {
			t.Fatalf("passed %q, want %q", out.Bytes(), data)
		}
		if (err != nil) != (failed != nil) {
			t.Fatalf("error %v, fail callback %v", err, failed)
		}
		if len(data) <= MaxHeaderBytes && err != nil {
			t.Fatalf("failed on %d bytes, under the limit: %v", len(data), err)
		}
	})
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
