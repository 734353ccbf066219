package media

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

// countingWriter records what was written and in how many calls.
type countingWriter struct {
	bytes.Buffer
	calls int
}

func (w *countingWriter) Write(p []byte) (int, error) {
	w.calls++
	return w.Buffer.Write(p)
}

// TestCopyHashed: the content arrives whole, hashed, with its head, in one
// write per filled buffer however small the reads; a limit stops it and a
// read error is returned after what came before it was written.
func TestCopyHashed(t *testing.T) {
	content := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	boom := errors.New("boom")
	tests := []struct {
		name      string
		src       io.Reader
		limit     int64
		bufSize   int
		wantN     int
		wantCalls int
		wantErr   error
	}{
		{"one byte reads", iotest.OneByteReader(bytes.NewReader(content)), 1 << 20, 16 << 10, len(content), 4, nil},
		{"half reads", iotest.HalfReader(bytes.NewReader(content)), 1 << 20, 1 << 20, len(content), 1, nil},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(content)), 1 << 20, 1 << 20, len(content), 1, nil},
		{"limit", bytes.NewReader(content), 1000, 512, 1000, 2, nil},
		{"empty", bytes.NewReader(nil), 1 << 20, 512, 0, 0, nil},
		{"error after data", io.MultiReader(bytes.NewReader(content[:100]), iotest.ErrReader(boom)), 1 << 20, 512, 100, 1, boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dst countingWriter
			h := sha256.New()
			n, head, err := copyHashed(&dst, h, tt.src, tt.limit, make([]byte, tt.bufSize))
			if !errors.Is(err, tt.wantErr) || (err != nil) != (tt.wantErr != nil) {
				t.Fatalf("err %v, want %v", err, tt.wantErr)
			}
			want := content[:tt.wantN]
			if n != int64(tt.wantN) || !bytes.Equal(dst.Bytes(), want) {
				t.Errorf("copied %d bytes (%d written), want %d", n, dst.Len(), tt.wantN)
			}
			if dst.calls != tt.wantCalls {
				t.Errorf("%d writes, want %d", dst.calls, tt.wantCalls)
			}
			if sum := sha256.Sum256(want); !bytes.Equal(h.Sum(nil), sum[:]) {
				t.Error("hash differs from the content's")
			}
			if !bytes.Equal(head, want[:min(len(want), sniffLen)]) {
				t.Errorf("head of %d bytes, want the first %d", len(head), min(len(want), sniffLen))
			}
		})
	}
}
