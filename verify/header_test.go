package verify

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strings"
	"testing"
)

// TestVerifyHeaderBomb: a 40 MB header of tiny fields fails verification
// with a reason, reading at most MaxHeaderBytes of it. Before the limit,
// the same message cost about 3.9 GB.
func TestVerifyHeaderBomb(t *testing.T) {
	v, err := New(Options{TrustedAuthservIDs: []string{"mx.example.test"}, Resolver: &fakeResolver{}})
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString("Authentication-Results: mx.example.test; dmarc=pass header.from=example.test\r\nFrom: jane@example.test\r\n")
	for b.Len() < 40<<20 {
		b.WriteString("X: y\r\n")
	}
	b.WriteString("\r\nbody\r\n")
	raw := b.Bytes()

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	vd := v.Verify(context.Background(), raw)
	runtime.ReadMemStats(&after)
	if vd.Passed() || !strings.Contains(vd.Reason, "header larger than 1 MiB") {
		t.Errorf("verdict %+v, want a failure for the header size", vd)
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 64<<20 {
		t.Errorf("verifying a 40 MB header allocated %d MiB, want under 64 MiB", alloc>>20)
	}
}

// FuzzReadHeader: readHeader never parses more than MaxHeaderBytes, fails
// exactly when the header block does not end within MaxHeaderBytes of a
// longer message, and a header that ends within the limit is read. The
// input is a unit repeated up to 65,535 times, so that sizes around the
// limit are reached.
func FuzzReadHeader(f *testing.F) {
	f.Add([]byte("X: y\r\n"), uint16(60000))
	f.Add([]byte("From: a@b.example\r\n\r\nbody "), uint16(3))
	f.Add([]byte("Subject: "+strings.Repeat("s", 40)+"\n"), uint16(30000))
	f.Add([]byte("\n"), uint16(1))
	f.Fuzz(func(t *testing.T, unit []byte, reps uint16) {
		if len(unit) == 0 || len(unit)*int(reps) > 4<<20 {
			return
		}
		raw := bytes.Repeat(unit, int(reps))
		h, err := readHeader(raw)
		end := headerEnd(raw)
		tooLarge := len(raw) > MaxHeaderBytes && (end < 0 || end > MaxHeaderBytes)
		if tooLarge != errors.Is(err, errHeaderTooLarge) {
			t.Fatalf("%d bytes, header end %d: error %v", len(raw), end, err)
		}
		if err != nil {
			return
		}
		size := 0
		for f := h.Fields(); f.Next(); {
			size += len(f.Key()) + len(f.Value())
		}
		if size > MaxHeaderBytes {
			t.Fatalf("read %d header bytes, limit %d", size, MaxHeaderBytes)
		}
	})
}
