package mailparse

import (
	"bytes"
	"encoding/base64"
	"io"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-message/charset"
	"golang.org/x/text/encoding/charmap"
)

// charsetResult says how a byte string was turned into UTF-8.
type charsetResult struct {
	text     string
	unknown  bool // the charset is not known; bytes kept as best-effort UTF-8
	repaired bool // invalid bytes were replaced or the charset was guessed
}

// normaliseCharset lower-cases a charset label and strips quotes, blanks and
// an RFC 2231 language suffix ("utf-8*en").
func normaliseCharset(cs string) string {
	cs = strings.ToLower(strings.Trim(strings.TrimSpace(cs), `"' `))
	if i := strings.IndexByte(cs, '*'); i >= 0 {
		cs = cs[:i]
	}
	return cs
}

// The (normalised) charset names decodeCharset reads as ASCII and as UTF-8.
var (
	asciiNames = [...]string{"", "us-ascii", "ascii", "ansi_x3.4-1968", "us"}
	utf8Names  = [...]string{"utf-8", "utf8", "unicode-1-1-utf-8", "x-unicode20utf8"}
)

// keptAsIs reports whether decodeCharset returns b unchanged (as a
// string) for charset cs: valid UTF-8 in a charset it reads as ASCII or
// UTF-8.
func keptAsIs(cs string, b []byte) bool {
	n := normaliseCharset(cs)
	for _, name := range asciiNames {
		if n == name {
			return utf8.Valid(b)
		}
	}
	for _, name := range utf8Names {
		if n == name {
			return utf8.Valid(b)
		}
	}
	return false
}

// decodeCharset converts b from charset cs to UTF-8 without ever failing.
// Text that claims to be ASCII (or claims nothing) but is not valid UTF-8 is
// read as windows-1252, the usual culprit; text that claims UTF-8 has its
// invalid sequences replaced by U+FFFD; an unknown charset keeps the bytes
// as UTF-8 with replacements.
func decodeCharset(cs string, b []byte) charsetResult {
	switch normaliseCharset(cs) {
	case asciiNames[0], asciiNames[1], asciiNames[2], asciiNames[3], asciiNames[4]:
		if utf8.Valid(b) {
			return charsetResult{text: string(b)}
		}
		out, err := charmap.Windows1252.NewDecoder().Bytes(b)
		if err != nil {
			return charsetResult{text: strings.ToValidUTF8(string(b), "\uFFFD"), repaired: true}
		}
		return charsetResult{text: string(out), repaired: true}
	case utf8Names[0], utf8Names[1], utf8Names[2], utf8Names[3]:
		if utf8.Valid(b) {
			return charsetResult{text: string(b)}
		}
		return charsetResult{text: strings.ToValidUTF8(string(b), "\uFFFD"), repaired: true}
	}
	r, err := charset.Reader(normaliseCharset(cs), bytes.NewReader(b))
	if err != nil {
		return charsetResult{text: strings.ToValidUTF8(string(b), "\uFFFD"), unknown: true, repaired: !utf8.Valid(b)}
	}
	out, err := io.ReadAll(r)
	res := charsetResult{text: string(out)}
	if err != nil {
		res.repaired = true
	}
	if !utf8.ValidString(res.text) {
		res.text = strings.ToValidUTF8(res.text, "\uFFFD")
		res.repaired = true
	}
	return res
}

// toUTF8 is decodeCharset for places that have nowhere to report problems
// (parameter values, encoded-words).
func toUTF8(cs string, b []byte) string {
	return decodeCharset(cs, b).text
}

// decodeWords decodes RFC 2047 encoded-words anywhere in s. Adjacent words
// in the same charset are joined at the byte level before conversion, so a
// multi-byte character split across two words (common with ISO-2022-JP and
// sloppy UTF-8 encoders) survives. Whitespace between encoded-words is
// dropped as RFC 2047 requires. Malformed words are kept literally.
func decodeWords(s string) string {
	if !strings.Contains(s, "=?") {
		return decodeCharset("", []byte(s)).text
	}
	var out strings.Builder
	var pending []byte // decoded bytes of adjacent words sharing pendingCS
	var pendingCS string
	var gap string // whitespace seen after the last word, dropped if another word follows
	flush := func() {
		if len(pending) > 0 || pendingCS != "" {
			out.WriteString(toUTF8(pendingCS, pending))
		}
		pending, pendingCS = nil, ""
	}
	inWord := false // the previous token was an encoded-word
	for len(s) > 0 {
		i := strings.Index(s, "=?")
		if i < 0 {
			break
		}
		cs, data, n, ok := parseEncodedWord(s[i:])
		if !ok {
			// Not a word: emit up to and including "=?" literally.
			lit := s[:i+2]
			if inWord {
				flush()
				out.WriteString(gap)
				gap = ""
				inWord = false
			}
			out.WriteString(decodeCharset("", []byte(lit)).text)
			s = s[i+2:]
			continue
		}
		lit := s[:i]
		if inWord && strings.Trim(lit, " \t\r\n") == "" {
			// Only whitespace between two words: drop it.
		} else {
			flush()
			out.WriteString(gap)
			out.WriteString(decodeCharset("", []byte(lit)).text)
		}
		gap = ""
		if !strings.EqualFold(cs, pendingCS) {
			flush()
		}
		pendingCS = cs
		pending = append(pending, data...)
		inWord = true
		s = s[i+n:]
		// Remember trailing whitespace in case no word follows.
		j := 0
		for j < len(s) && (s[j] == ' ' || s[j] == '\t' || s[j] == '\r' || s[j] == '\n') {
			j++
		}
		gap = s[:j]
		s = s[j:]
	}
	flush()
	out.WriteString(gap)
	out.WriteString(decodeCharset("", []byte(s)).text)
	return out.String()
}

// parseEncodedWord parses "=?charset?enc?text?=" at the start of s and
// returns the charset, the decoded bytes and the length consumed.
func parseEncodedWord(s string) (cs string, data []byte, n int, ok bool) {
	if !strings.HasPrefix(s, "=?") {
		return "", nil, 0, false
	}
	rest := s[2:]
	q1 := strings.IndexByte(rest, '?')
	if q1 <= 0 || q1 > 75 || strings.ContainsAny(rest[:q1], " \t\r\n") {
		return "", nil, 0, false
	}
	cs = normaliseCharset(rest[:q1])
	rest = rest[q1+1:]
	if len(rest) < 2 || rest[1] != '?' {
		return "", nil, 0, false
	}
	enc := rest[0] | 0x20
	rest = rest[2:]
	end := strings.Index(rest, "?=")
	if end < 0 || strings.ContainsAny(rest[:end], " \t\r\n") {
		return "", nil, 0, false
	}
	text := rest[:end]
	n = len(s) - len(rest) + end + 2
	switch enc {
	case 'b':
		data, _ = decodeBase64Bytes([]byte(text))
	case 'q':
		data = make([]byte, 0, len(text))
		for i := 0; i < len(text); i++ {
			c := text[i]
			switch {
			case c == '_':
				data = append(data, ' ')
			case c == '=' && i+2 < len(text):
				hi, ok1 := unhex(text[i+1])
				lo, ok2 := unhex(text[i+2])
				if ok1 && ok2 {
					data = append(data, hi<<4|lo)
					i += 2
				} else {
					data = append(data, c)
				}
			default:
				data = append(data, c)
			}
		}
	default:
		return "", nil, 0, false
	}
	return cs, data, n, true
}

// b64Value maps a byte to its base64 value, or 0xff when it is not part of
// the alphabet. Both the standard and the URL-safe alphabets are accepted.
func b64Value(c byte) byte {
	switch {
	case 'A' <= c && c <= 'Z':
		return c - 'A'
	case 'a' <= c && c <= 'z':
		return c - 'a' + 26
	case '0' <= c && c <= '9':
		return c - '0' + 52
	case c == '+' || c == '-':
		return 62
	case c == '/' || c == '_':
		return 63
	}
	return 0xff
}

// base64State is an incremental, forgiving base64 decoder: characters
// outside the alphabet are skipped and counted, padding ends a quantum
// wherever it appears (concatenated base64 blobs decode), a final partial
// quantum is flushed.
type base64State struct {
	quad [4]byte
	nq   int
	bad  int // bytes skipped: outside the alphabet, or in a corrupt line
}

// feed decodes in and appends the result to out.
func (st *base64State) feed(out, in []byte) []byte {
	for _, c := range in {
		v := b64Value(c)
		if v == 0xff {
			switch c {
			case ' ', '\t', '\r', '\n':
			case '=':
				out = st.flushPartial(out)
			default:
				st.bad++
			}
			continue
		}
		st.quad[st.nq] = v
		st.nq++
		if st.nq == 4 {
			out = append(out,
				st.quad[0]<<2|st.quad[1]>>4,
				st.quad[1]<<4|st.quad[2]>>2,
				st.quad[2]<<6|st.quad[3])
			st.nq = 0
		}
	}
	return out
}

// trimEOL is bytes.TrimRight(line, "\r\n") without building the cutset's
// set for every line.
func trimEOL(line []byte) []byte {
	n := len(line)
	for n > 0 && (line[n-1] == '\n' || line[n-1] == '\r') {
		n--
	}
	return line[:n]
}

// feedLine decodes one line of a base64 body. A complete line holding a
// character outside the alphabet is corrupt (a mailer or a gateway wrote
// text into the body) and is skipped whole, so that the letters in it do
// not shift the quanta of every later line.
func (st *base64State) feedLine(out, line []byte, complete bool) []byte {
	if complete && st.nq == 0 {
		// Fast path: a well-formed line decodes with the standard decoder.
		text := trimEOL(line)
		if len(text)%4 == 0 {
			out = slices.Grow(out, len(text)/4*3)
			if n, err := base64.StdEncoding.Decode(out[len(out):cap(out)], text); err == nil {
				return out[:len(out)+n]
			}
		}
	}
	if complete {
		for _, c := range line {
			if b64Value(c) == 0xff && c != '=' && c != ' ' && c != '\t' && c != '\r' && c != '\n' {
				st.bad += len(trimEOL(line))
				return out
			}
		}
	}
	return st.feed(out, line)
}

// flushPartial emits the bytes a partial quantum holds.
func (st *base64State) flushPartial(out []byte) []byte {
	switch st.nq {
	case 1:
		st.bad++ // six bits cannot make a byte
	case 2:
		out = append(out, st.quad[0]<<2|st.quad[1]>>4)
	case 3:
		out = append(out, st.quad[0]<<2|st.quad[1]>>4, st.quad[1]<<4|st.quad[2]>>2)
	}
	st.nq = 0
	return out
}

// decodeBase64Bytes decodes a complete base64 string forgivingly and
// returns the number of bad characters.
func decodeBase64Bytes(in []byte) ([]byte, int) {
	var st base64State
	out := st.feed(make([]byte, 0, len(in)*3/4+3), in)
	out = st.flushPartial(out)
	return out, st.bad
}

// base64Reader streams base64 decoding with base64State, line by line.
type base64Reader struct {
	r    io.Reader
	st   base64State
	in   []byte
	line []byte // the current, incomplete line
	out  []byte
	pos  int
	err  error
	// lineByLine turns off decoding runs of complete lines at once; the
	// tests compare the two.
	lineByLine bool
}

// b64MaxLine bounds the line buffer; longer lines are decoded in pieces
// character by character.
const b64MaxLine = 1024

// newBase64Reader returns a forgiving streaming base64 decoder.
func newBase64Reader(r io.Reader) *base64Reader {
	return &base64Reader{r: r, in: make([]byte, 4096), line: make([]byte, 0, b64MaxLine)}
}

// Read implements io.Reader.
func (d *base64Reader) Read(p []byte) (int, error) {
	for d.pos >= len(d.out) {
		if d.err != nil {
			return 0, d.err
		}
		n, err := d.r.Read(d.in)
		d.out, d.pos = d.out[:0], 0
		data := d.in[:n]
		if !d.lineByLine && len(d.line) == 0 && d.st.nq == 0 {
			data = d.decodeLines(data)
		}
		for len(data) > 0 {
			i := bytes.IndexByte(data, '\n')
			if i < 0 {
				for len(d.line)+len(data) >= b64MaxLine {
					// An over-long line: decode it in pieces.
					k := b64MaxLine - len(d.line)
					d.out = d.st.feedLine(d.out, append(d.line, data[:k]...), false)
					d.line, data = d.line[:0], data[k:]
				}
				d.line = append(d.line, data...)
				break
			}
			line := data[:i+1]
			if len(d.line) > 0 {
				d.line = append(d.line, line...)
				line = d.line
			}
			d.out = d.st.feedLine(d.out, line, true)
			d.line, data = d.line[:0], data[i+1:]
		}
		if err != nil {
			// Also on a read error: keep what decodes.
			d.out = d.st.feedLine(d.out, d.line, true)
			d.out = d.st.flushPartial(d.out)
			d.line = d.line[:0]
			d.err = err
		}
	}
	n := copy(p, d.out[d.pos:])
	d.pos += n
	return n, nil
}

// decodeLines decodes the complete lines at the start of data with one
// call of the standard decoder, which skips CR and LF, and returns the rest
// of data. When they are not well-formed base64 it decodes nothing and
// returns data whole, for feedLine to take line by line. Where the
// standard decoder succeeds on a run of lines, feedLine would produce the
// same bytes from them and count nothing bad: they hold only the alphabet,
// line ends and final padding, in whole quanta. It must be called with no
// partial line or quantum pending.
func (d *base64Reader) decodeLines(data []byte) []byte {
	j := bytes.LastIndexByte(data, '\n')
	if j < 0 {
		return data
	}
	lines := data[:j+1]
	d.out = slices.Grow(d.out, len(lines)/4*3)
	n, err := base64.StdEncoding.Decode(d.out[len(d.out):cap(d.out)], lines)
	if err != nil {
		return data
	}
	d.out = d.out[:len(d.out)+n]
	return data[j+1:]
}

// badBytes reports how many bytes were skipped.
func (d *base64Reader) badBytes() int { return d.st.bad }

// qpReader is a forgiving quoted-printable decoder: a malformed "=" escape
// is kept literally and counted instead of aborting the part.
type qpReader struct {
	r   io.Reader
	buf []byte // the memory of in
	in  []byte // undecoded carry (an incomplete line), then what was read
	out []byte
	pos int
	err error
	bad int
}

// qpMaxCarry bounds the undecoded tail kept while waiting for a line end.
const qpMaxCarry = 8 << 10

// qpReadSize is how much qpReader reads at a time. Where a line longer
// than qpMaxCarry is cut into fragments depends on it.
const qpReadSize = 4096

// newQPReader returns a forgiving streaming quoted-printable decoder.
func newQPReader(r io.Reader) *qpReader {
	// Room for a read and a carry of a few lines; the decoded text of a
	// read is at most as long as the read and its carry.
	buf := make([]byte, qpReadSize+qpReadSize/4)
	return &qpReader{r: r, buf: buf, in: buf[:0], out: make([]byte, 0, qpReadSize)}
}

// Read implements io.Reader.
func (d *qpReader) Read(p []byte) (int, error) {
	for d.pos >= len(d.out) {
		if d.err != nil {
			return 0, d.err
		}
		d.out, d.pos = d.out[:0], 0
		// Read after the carry, into the buffer's spare capacity: the
		// carry moves to the buffer's start (to a larger buffer if it
		// must) when the spare room is short, instead of being copied to
		// a new buffer with each read.
		if cap(d.in)-len(d.in) < qpReadSize {
			if len(d.in)+qpReadSize > len(d.buf) {
				d.buf = make([]byte, 2*(len(d.in)+qpReadSize))
			}
			d.in = d.buf[:copy(d.buf, d.in)]
		}
		n, err := d.r.Read(d.in[len(d.in) : len(d.in)+qpReadSize])
		d.in = d.in[:len(d.in)+n]
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
			d.in = d.in[cut:]
		}
	}
	n := copy(p, d.out[d.pos:])
	d.pos += n
	return n, nil
}

// decodeLine decodes one line (with its line ending, if any). When whole is
// false the line is a fragment of a longer one and trailing blanks are kept.
// The bytes between escapes are appended as blocks.
func (d *qpReader) decodeLine(out, line []byte, whole bool) []byte {
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
	for len(line) > 0 {
		i := bytes.IndexByte(line, '=')
		if i < 0 {
			out = append(out, line...)
			break
		}
		out = append(out, line[:i]...)
		if i+2 < len(line) {
			hi, ok1 := unhex(line[i+1])
			lo, ok2 := unhex(line[i+2])
			if ok1 && ok2 {
				out = append(out, hi<<4|lo)
				line = line[i+3:]
				continue
			}
		}
		d.bad++
		out = append(out, '=')
		line = line[i+1:]
	}
	return append(out, eol...)
}

// badBytes reports how many malformed escapes were kept literally.
func (d *qpReader) badBytes() int { return d.bad }
