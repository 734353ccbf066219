package media

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"hash"
	"io"
	"os"
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

// hashingReader is a SHA256Reader; skip makes it count bytes that it did
// not return, as a reader read before Put would.
type hashingReader struct {
	r    io.Reader
	h    hash.Hash
	n    int64
	skip int64
}

func (r *hashingReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.h.Write(p[:n])
	r.n += int64(n)
	return n, err
}

func (r *hashingReader) ReadSHA256() (sum [sha256.Size]byte, n int64) {
	r.h.Sum(sum[:0])
	return sum, r.n + r.skip
}

// TestPutSHA256Reader: Put takes the digest of a reader that hashes what it
// returns, and hashes the file itself when the reader's count is not what
// Put read.
func TestPutSHA256Reader(t *testing.T) {
	content := bytes.Repeat([]byte("%PDF-1.4 attachment "), 40000) // 800 KB: two buffers
	want := sha256.Sum256(content)
	tests := []struct {
		name string
		skip int64
	}{
		{"count matches", 0},
		{"read before Put", 7},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fx := newFixture(t, nil)
			r := &hashingReader{r: iotest.HalfReader(bytes.NewReader(content)), h: sha256.New(), skip: tt.skip}
			rec, err := fx.lib.Put(context.Background(), PutMeta{Filename: "a.pdf"}, r)
			if err != nil {
				t.Fatal(err)
			}
			if rec.SHA256 != hex.EncodeToString(want[:]) || rec.Size != int64(len(content)) {
				t.Errorf("record %s, %d bytes; want %x, %d", rec.SHA256, rec.Size, want, len(content))
			}
			got, err := os.ReadFile(fx.lib.filePath(rec.SHA256))
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("stored file: %d bytes, %v", len(got), err)
			}
		})
	}
}
