package mailparse

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// qpReaderReference is qpReader as it was before it read into its carry
// buffer and appended the bytes between escapes as blocks: FuzzQPReader
// compares the two.
type qpReaderReference struct {
	r   io.Reader
	buf []byte // read buffer
	in  []byte // undecoded carry: an incomplete line
	out []byte
	pos int
	err error
	bad int
}

// newQPReaderReference returns the reference decoder.
func newQPReaderReference(r io.Reader) *qpReaderReference {
	return &qpReaderReference{r: r, buf: make([]byte, 4096)}
}

// Read implements io.Reader.
func (d *qpReaderReference) Read(p []byte) (int, error) {
	for d.pos >= len(d.out) {
		if d.err != nil {
			return 0, d.err
		}
		d.out, d.pos = d.out[:0], 0
		n, err := d.r.Read(d.buf)
		d.in = append(d.in, d.buf[:n]...)
		// Decode every complete line.
		for {
			i := bytes.IndexByte(d.in, '\n')
			if i < 0 {
				break
			}
			d.out = d.decodeLine(d.out, d.in[:i+1], true)
			d.in = d.in[i+1:]
		}
		if err != nil {
			d.out = d.decodeLine(d.out, d.in, true)
			d.in = nil
			d.err = err
		} else if len(d.in) > qpMaxCarry {
			// A very long line: decode all but a possibly split escape.
			cut := len(d.in)
			if d.in[cut-1] == '=' {
				cut--
			} else if d.in[cut-2] == '=' {
				cut -= 2
			}
			d.out = d.decodeLine(d.out, d.in[:cut], false)
			d.in = append(d.in[:0:0], d.in[cut:]...)
		}
	}
	n := copy(p, d.out[d.pos:])
	d.pos += n
	return n, nil
}

// decodeLine decodes one line (with its line ending, if any). When whole is
// false the line is a fragment of a longer one and trailing blanks are kept.
func (d *qpReaderReference) decodeLine(out, line []byte, whole bool) []byte {
	var eol []byte
	if whole {
		switch {
		case bytes.HasSuffix(line, []byte("\r\n")):
			eol, line = line[len(line)-2:], line[:len(line)-2]
		case bytes.HasSuffix(line, []byte("\n")):
			eol, line = line[len(line)-1:], line[:len(line)-1]
		}
		line = bytes.TrimRight(line, " \t")
		if bytes.HasSuffix(line, []byte("=")) {
			line, eol = line[:len(line)-1], nil // soft line break
		}
	}
	for i := 0; i < len(line); i++ {
		c := line[i]
		if c != '=' {
			out = append(out, c)
			continue
		}
		if i+2 < len(line) {
			hi, ok1 := unhex(line[i+1])
			lo, ok2 := unhex(line[i+2])
			if ok1 && ok2 {
				out = append(out, hi<<4|lo)
				i += 2
				continue
			}
		}
		d.bad++
		out = append(out, c)
	}
	return append(out, eol...)
}

// FuzzQPReader: qpReader decodes any input, read whole or a byte at a
// time, to the bytes and the count of bad escapes that the reference
// decoder gives.
func FuzzQPReader(f *testing.F) {
	for _, s := range []string{
		"caf=C3=A9 =\r\nsoft\r\n", "a=\n=ZZ=4", "trailing  \t\r\nx", "=", "==41=\r\n",
		strings.Repeat("x", 9000) + "=4" + strings.Repeat("y", 5000) + "  \n",
		strings.Repeat("=41", 4000) + "\n" + strings.Repeat("z ", 6000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		for _, oneByte := range []bool{false, true} {
			source := func() io.Reader {
				if oneByte {
					return iotestOneByte(strings.NewReader(in))
				}
				return strings.NewReader(in)
			}
			ref := newQPReaderReference(source())
			want, wantErr := io.ReadAll(ref)
			d := newQPReader(source())
			got, err := io.ReadAll(d)
			if !bytes.Equal(got, want) || (err == nil) != (wantErr == nil) || d.badBytes() != ref.bad {
				t.Fatalf("qpReader(%.60q, one byte %v) = %.60q, %v, bad %d; reference %.60q, %v, bad %d",
					in, oneByte, got, err, d.badBytes(), want, wantErr, ref.bad)
			}
		}
	})
}
