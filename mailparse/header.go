package mailparse

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"unicode"

	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// MaxHeaderBytes bounds every header block read: the message's own and
// each MIME part's. A larger one fails Parse with ErrHeaderTooLarge (fail
// closed): millions of tiny fields would otherwise cost gigabytes of memory.
// package verify reads the message header under the same limit.
const MaxHeaderBytes = 1 << 20

const maxHeaderBytes = MaxHeaderBytes

// ErrHeaderTooLarge is returned by Parse when a header block, of the
// message or of a MIME part, is larger than MaxHeaderBytes.
var ErrHeaderTooLarge = errors.New("header larger than 1 MiB")

// topHeader is the result of reading a message's header block.
type topHeader struct {
	header   textproto.Header
	pushback []byte // a body line that ended a header lacking its blank line
	problems []string
}

// readTopHeader reads the header block forgivingly: leading junk (an mbox
// "From " line, blank lines, garbage) is skipped, a line that is not a field
// ends the header even without the blank separator, and over-long headers
// fail with ErrHeaderTooLarge. It fails with ErrNoHeader when no field at
// all can be found, or with the reader's error.
func readTopHeader(br *bufio.Reader) (topHeader, error) {
	var th topHeader
	var fields [][]byte
	var cur []byte
	total := 0
	junk := 0
	mbox := false
loop:
	for {
		line, err := readBoundedLine(br, maxHeaderBytes+1)
		if err != nil && err != io.EOF {
			return th, err
		}
		if len(line) == 0 && err == io.EOF {
			break
		}
		total += len(line)
		over := total > maxHeaderBytes
		switch {
		case isBlankLine(line):
			if cur == nil && len(fields) == 0 {
				junk++
				if over {
					return th, ErrNoHeader
				}
				continue
			}
			break loop
		case line[0] == ' ' || line[0] == '\t':
			if cur == nil {
				junk++
				if over {
					return th, ErrNoHeader
				}
				continue
			}
			if over {
				return th, ErrHeaderTooLarge
			}
			cur = append(cur, line...)
		case isFieldLine(line):
			if cur != nil {
				fields = append(fields, cur)
				cur = nil
			}
			if over {
				return th, ErrHeaderTooLarge
			}
			cur = append([]byte(nil), line...)
		default:
			if cur == nil && len(fields) == 0 {
				if junk == 0 && !mbox && bytes.HasPrefix(line, []byte("From ")) {
					mbox = true // an mbox separator is not a problem
				} else {
					junk++
				}
				if over {
					return th, ErrNoHeader
				}
				continue
			}
			th.pushback = append([]byte(nil), line...)
			th.problems = append(th.problems, "header not ended by an empty line; body assumed to start at the first non-header line")
			break loop
		}
		if err == io.EOF {
			break
		}
	}
	if cur != nil {
		fields = append(fields, cur)
	}
	if len(fields) == 0 {
		return th, ErrNoHeader
	}
	if junk > 0 {
		th.problems = append(th.problems, fmt.Sprintf("%d lines before the header skipped", junk))
	}
	// textproto.Header.AddRaw puts a field on top of the others, so add them
	// last to first.
	for i := len(fields) - 1; i >= 0; i-- {
		f := fields[i]
		if !bytes.HasSuffix(f, []byte("\n")) {
			f = append(f, '\r', '\n')
		}
		th.header.AddRaw(f)
	}
	return th, nil
}

// readBoundedLine reads one line including its terminator, keeping at most
// max bytes of it (the rest of an over-long line is consumed and dropped).
func readBoundedLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(line) < max {
			room := max - len(line)
			if len(chunk) > room {
				line = append(line, chunk[:room]...)
			} else {
				line = append(line, chunk...)
			}
		}
		if err == bufio.ErrBufferFull {
			continue
		}
		return line, err
	}
}

// isBlankLine reports whether line is empty apart from its terminator.
func isBlankLine(line []byte) bool {
	return len(bytes.TrimRight(line, "\r\n")) == 0
}

// isFieldLine reports whether line looks like "Name: value" with a legal
// RFC 5322 field name (trailing blanks before the colon are tolerated).
func isFieldLine(line []byte) bool {
	i := bytes.IndexByte(line, ':')
	if i <= 0 {
		return false
	}
	key := bytes.TrimRight(line[:i], " \t")
	if len(key) == 0 {
		return false
	}
	for _, c := range key {
		if c < 33 || c > 126 {
			return false
		}
	}
	return true
}

// cleanHeaderText decodes encoded-words, drops control characters and
// collapses runs of white space.
func cleanHeaderText(s string) string {
	return collapseSpace(decodeWords(s))
}

// collapseSpace removes control characters, turns every run of white space
// into one space and trims the ends.
func collapseSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		if unicode.IsSpace(r) {
			space = b.Len() > 0
			continue
		}
		if unicode.IsControl(r) {
			continue
		}
		if space {
			b.WriteByte(' ')
			space = false
		}
		b.WriteRune(r)
	}
	return b.String()
}

// msgIDTokens returns the contents of every <...> token in s that is a
// plausible message identifier (no white space, no nested brackets).
func msgIDTokens(s string) []string {
	var ids []string
	for {
		i := strings.IndexByte(s, '<')
		if i < 0 {
			return ids
		}
		s = s[i+1:]
		j := strings.IndexAny(s, "<>")
		if j < 0 {
			return ids
		}
		if s[j] == '<' {
			continue
		}
		id := s[:j]
		s = s[j+1:]
		if validMsgID(id) {
			ids = append(ids, id)
		}
	}
}

// validMsgID accepts non-empty printable ASCII without white space or
// brackets, at most 998 bytes: looser than RFC 5322 (which wants an "@"),
// because threading should work with the identifiers mailers really send.
func validMsgID(id string) bool {
	if id == "" || len(id) > 998 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if c <= ' ' || c >= 0x7f || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// messageIDOf returns the identifier in a Message-ID field value, strictly
// parsed when possible and otherwise the first plausible <...> token.
func messageIDOf(h *mail.Header) (string, bool) {
	v := h.Get("Message-Id")
	if strings.TrimSpace(v) == "" {
		return "", true
	}
	if id, err := h.MessageID(); err == nil && validMsgID(id) {
		return id, true
	}
	if ids := msgIDTokens(v); len(ids) > 0 {
		return ids[0], true
	}
	return "", false
}

// ErrNoFrom is Email.FromErr when the message has no From field.
var ErrNoFrom = errors.New("mailparse: no From field")

// parseFrom parses the From field. When the strict RFC 5322 parser rejects
// it, a lenient scan recovers an address from "<addr>" or a bare word with
// an "@"; the strict error is then returned as a problem and fromErr is nil.
func parseFrom(h *mail.Header) (addrs []*mail.Address, raw string, fromErr error, problem string) {
	raw = h.Get("From")
	if strings.TrimSpace(raw) == "" {
		return nil, raw, ErrNoFrom, ""
	}
	list, err := h.AddressList("From")
	if err == nil && len(list) > 0 {
		return list, raw, nil, ""
	}
	if err == nil {
		err = errors.New("empty address list")
	}
	if a := lenientAddress(raw); a != nil {
		return []*mail.Address{a}, raw, nil, fmt.Sprintf("From %q is malformed (%v); address recovered leniently", truncate(raw, 80), err)
	}
	return nil, raw, fmt.Errorf("mailparse: From %q: %w", truncate(raw, 80), err), ""
}

// firstAddress returns the addr-spec of the first parsable address of a
// field, or "" with a problem when the field exists but has none.
func firstAddress(h *mail.Header, key string) (string, string) {
	raw := h.Get(key)
	if strings.TrimSpace(raw) == "" {
		return "", ""
	}
	list, err := h.AddressList(key)
	if err == nil && len(list) > 0 {
		return list[0].Address, ""
	}
	if a := lenientAddress(raw); a != nil {
		return a.Address, ""
	}
	return "", fmt.Sprintf("%s %q has no usable address", key, truncate(raw, 80))
}

// addressList parses every field named key as an RFC 5322 address-list
// (section 3.6.3; a message should have at most one Cc, but several are
// read in order). A field that does not parse strictly contributes no
// address and a problem: a list cannot be recovered leniently without
// risking addresses the author did not write.
func addressList(h *mail.Header, key string) ([]*mail.Address, string) {
	var out []*mail.Address
	var probs []string
	fields := h.FieldsByKey(key)
	for fields.Next() {
		raw := fields.Value()
		if strings.TrimSpace(raw) == "" {
			continue
		}
		list, err := mail.ParseAddressList(raw)
		if err != nil {
			probs = append(probs, fmt.Sprintf("%s %q has no usable address list (%v); it is left out", key, truncate(raw, 80), err))
			continue
		}
		out = append(out, list...)
	}
	return out, strings.Join(probs, "; ")
}

// lenientAddress finds an address in a field the strict parser rejected:
// the last "<local@domain>" or else the first word containing "@".
func lenientAddress(raw string) *mail.Address {
	if i := strings.LastIndexByte(raw, '<'); i >= 0 {
		if j := strings.IndexByte(raw[i:], '>'); j > 0 {
			addr := strings.TrimSpace(raw[i+1 : i+j])
			if plausibleAddr(addr) {
				name := strings.Trim(cleanHeaderText(raw[:i]), `" `)
				return &mail.Address{Name: name, Address: addr}
			}
		}
	}
	for _, w := range strings.FieldsFunc(raw, func(r rune) bool {
		return unicode.IsSpace(r) || r == ',' || r == ';' || r == '<' || r == '>' || r == '"' || r == '(' || r == ')'
	}) {
		if plausibleAddr(w) {
			return &mail.Address{Address: w}
		}
	}
	return nil
}

// plausibleAddr accepts local@domain with no blanks or control characters.
func plausibleAddr(s string) bool {
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || len(s) > 320 {
		return false
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f || r == '<' || r == '>' {
			return false
		}
	}
	return true
}

// truncate shortens s to at most n bytes on a rune boundary for use in
// problem messages.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

// isRuneStart reports whether b can begin a UTF-8 sequence.
func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// partHeaderGuard passes a multipart body through and fails with
// ErrHeaderTooLarge once the header of one of its parts (the lines after a
// delimiter line "--boundary", up to the first empty line; RFC 2046
// section 5.1.1) grows beyond MaxHeaderBytes. The multipart reader reads
// part headers without a limit, so the limit is kept here, on the stream it
// reads.
type partHeaderGuard struct {
	r     io.Reader
	delim []byte // "--" + boundary
	max   int    // MaxHeaderBytes; smaller in tests
	fail  func(error)

	line     []byte // the start of the current line, for delimiter detection
	long     bool   // the current line is longer than line can hold
	blank    bool   // the current line is empty so far (CR aside)
	inHeader bool   // between a delimiter line and the next empty line
	other    bool   // outside a part header, the current line cannot be a delimiter line
	size     int    // bytes of the current part header
	err      error
}

func newPartHeaderGuard(r io.Reader, boundary string, fail func(error)) *partHeaderGuard {
	return &partHeaderGuard{r: r, delim: []byte("--" + boundary), max: MaxHeaderBytes, fail: fail, blank: true}
}

// Read implements io.Reader. It looks at the data a line at a time, so an
// attachment's body costs one IndexByte per line; outside part headers a
// line that does not start with '-' is not copied.
func (g *partHeaderGuard) Read(b []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(b)
	for buf := b[:n]; len(buf) > 0; {
		seg := buf
		i := bytes.IndexByte(buf, '\n')
		if i >= 0 {
			seg = buf[:i]
		}
		if !g.inHeader && (g.other || len(g.line) == 0 && !g.long && len(seg) > 0 && seg[0] != '-') {
			// Outside a part header only a delimiter line matters, and
			// this one does not start with "--": nothing to keep.
			if i < 0 {
				g.other = true
				break
			}
			g.other = false
			g.line, g.long, g.blank = g.line[:0], false, true // endLine of such a line
			buf = buf[i+1:]
			continue
		}
		if g.inHeader {
			g.size += len(seg)
			if i >= 0 {
				g.size++
			}
			if g.size > g.max {
				g.err = ErrHeaderTooLarge
				g.fail(g.err)
				return 0, g.err
			}
		}
		if g.blank && len(bytes.TrimLeft(seg, "\r")) > 0 {
			g.blank = false
		}
		if room := len(g.delim) + 64 - len(g.line); room >= len(seg) {
			g.line = append(g.line, seg...)
		} else {
			g.line = append(g.line, seg[:max(room, 0)]...)
			g.long = true
		}
		if i < 0 {
			break
		}
		g.endLine()
		buf = buf[i+1:]
	}
	return n, err
}

// endLine moves the state on at the end of a line.
func (g *partHeaderGuard) endLine() {
	switch {
	case g.inHeader && g.blank:
		g.inHeader = false
	case !g.inHeader && !g.long && bytes.HasPrefix(g.line, g.delim):
		rest := bytes.TrimRight(g.line[len(g.delim):], " \t\r")
		if len(rest) == 0 { // a delimiter, not the close delimiter "--b--"
			g.inHeader, g.size = true, 0
		}
	}
	g.line, g.long, g.blank = g.line[:0], false, true
}
