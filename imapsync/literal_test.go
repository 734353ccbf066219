package imapsync

import (
	"errors"
	"io"
	"strings"
	"testing"
)

// sizedReader is a literal that announces size and holds data.
type sizedReader struct {
	io.Reader
	size int64
}

func (r sizedReader) Size() int64 { return r.size }

func TestReadLiteral(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		size    int64
		want    string
		wantErr error
	}{
		{"exact", "Subject: hi\r\n\r\nbody\r\n", 21, "Subject: hi\r\n\r\nbody\r\n", nil},
		{"empty", "", 0, "", nil},
		{"cut short", "Subject: hi", 21, "", io.ErrUnexpectedEOF},
		{"announced beyond the bound: read as it comes", "abc", maxPrealloc + 1, "abc", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readLiteral(sizedReader{strings.NewReader(tt.data), tt.size})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err == nil && string(got) != tt.want {
				t.Errorf("read %q, want %q", got, tt.want)
			}
		})
	}
	if got, err := readLiteral(nil); err != nil || got == nil || len(got) != 0 {
		t.Errorf("NIL body: %q, %v; want an empty, non-nil body", got, err)
	}
}
