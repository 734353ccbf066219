package config

import "strings"

// The toml package reports where a syntax error is, but has no API that
// tells where a key was written. lineIndex fills that gap: a small scanner
// that follows table headers ([server], [[channel]], [channel.imap]),
// `key = value` lines (dotted keys too) and inline tables, and records on
// which line each key path is defined. It is tolerant: on text it does not
// understand it skips to the next line, and it never fails (toml's parser is
// the judge of validity; this index only serves error messages).

// keyPos is one definition of a key: the [[channel]] occurrence it belongs
// to (-1 outside any channel) and its line (1-based).
type keyPos struct {
	ch   int
	line int
}

// pathAt names a key path within one [[channel]] occurrence (or -1).
type pathAt struct {
	ch   int
	path string
}

// lineIndex maps key paths to the lines where they are written.
type lineIndex struct {
	first   map[pathAt]int      // first line of a path within a channel occurrence
	anyCh   map[string]int      // first line of a path in any occurrence
	defs    map[string][]keyPos // every definition, in document order, as toml's MetaData.Keys lists them
	keysAt  map[int][]string    // last segments of the keys written on a line
	channel int                 // number of [[channel]] headers seen
}

// joinPath turns key segments into a map key; NUL cannot appear in a key
// the index reports, so the join is unambiguous enough for lookups.
func joinPath(segs []string) string { return strings.Join(segs, "\x00") }

// add records path as written on line. def says whether toml lists it as a
// key of its own (headers and `key =`), as opposed to an implicit table
// created by a dotted key.
func (ix *lineIndex) add(ch int, path []string, line int, def bool) {
	j := joinPath(path)
	if _, ok := ix.first[pathAt{ch, j}]; !ok {
		ix.first[pathAt{ch, j}] = line
	}
	if _, ok := ix.anyCh[j]; !ok {
		ix.anyCh[j] = line
	}
	if def {
		ix.defs[j] = append(ix.defs[j], keyPos{ch: ch, line: line})
		if len(path) > 0 {
			ix.keysAt[line] = append(ix.keysAt[line], path[len(path)-1])
		}
	}
}

// line returns the line of path within channel occurrence ch (-1 for
// top-level tables). When path itself is not written (a missing key), it
// returns the line of its closest written parent, such as the [channel.imap]
// or [[channel]] header. It returns 0 when nothing is known.
func (ix *lineIndex) line(ch int, path []string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := ix.first[pathAt{ch, joinPath(path[:n])}]; ok {
			return l
		}
	}
	for n := len(path); n > 0; n-- {
		if l, ok := ix.anyCh[joinPath(path[:n])]; ok {
			return l
		}
	}
	return 0
}

// definition returns the n-th (0-based) definition of path in the document.
func (ix *lineIndex) definition(path []string, n int) (keyPos, bool) {
	d := ix.defs[joinPath(path)]
	if n < 0 || n >= len(d) {
		return keyPos{}, false
	}
	return d[n], true
}

// indexLines scans TOML text and returns its line index.
func indexLines(src string) *lineIndex {
	s := &lineScanner{
		src:     src,
		line:    1,
		ch:      -1,
		tableCh: -1,
		ix: &lineIndex{
			first:  make(map[pathAt]int),
			anyCh:  make(map[string]int),
			defs:   make(map[string][]keyPos),
			keysAt: make(map[int][]string),
		},
	}
	for s.pos < len(s.src) {
		start := s.pos
		s.statement()
		if s.pos == start {
			s.skipLine() // never stall on text we do not understand
		}
	}
	s.ix.channel = s.ch + 1
	return s.ix
}

// lineScanner is the state of indexLines.
type lineScanner struct {
	src     string
	pos     int
	line    int
	ix      *lineIndex
	table   []string // current table header
	ch      int      // index of the latest [[channel]], -1 before the first
	tableCh int      // channel occurrence the current table belongs to, or -1
}

func (s *lineScanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

// skipSpace skips blanks within a line.
func (s *lineScanner) skipSpace() {
	for s.pos < len(s.src) && (s.src[s.pos] == ' ' || s.src[s.pos] == '\t') {
		s.pos++
	}
}

// skipBlank skips blanks, newlines and comments (inside arrays and inline
// tables).
func (s *lineScanner) skipBlank() {
	for s.pos < len(s.src) {
		switch s.src[s.pos] {
		case ' ', '\t', '\r':
			s.pos++
		case '\n':
			s.pos++
			s.line++
		case '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

// skipLine moves past the end of the current line.
func (s *lineScanner) skipLine() {
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		s.pos++
		if c == '\n' {
			s.line++
			return
		}
	}
}

// statement handles one line-level item: blank, comment, header or key.
func (s *lineScanner) statement() {
	s.skipSpace()
	switch s.peek() {
	case 0:
		s.pos = len(s.src)
	case '\n', '\r', '#':
		s.skipLine()
	case '[':
		s.header()
		s.skipLine()
	default:
		s.keyValue(s.table, s.tableCh)
		s.skipLine()
	}
}

// header handles [table] and [[array.of.tables]].
func (s *lineScanner) header() {
	line := s.line
	s.pos++
	array := false
	if s.peek() == '[' {
		array = true
		s.pos++
	}
	key, ok := s.key()
	if !ok {
		return
	}
	if array && len(key) == 1 && key[0] == "channel" {
		s.ch++
	}
	s.table = key
	s.tableCh = -1
	if key[0] == "channel" {
		s.tableCh = s.ch
	}
	s.ix.add(s.tableCh, key, line, true)
}

// keyValue handles `key = value` (key may be dotted) under table.
func (s *lineScanner) keyValue(table []string, ch int) {
	line := s.line
	key, ok := s.key()
	if !ok {
		return
	}
	s.skipSpace()
	if s.peek() != '=' {
		return
	}
	s.pos++
	full := make([]string, 0, len(table)+len(key))
	full = append(full, table...)
	for i := range key[:len(key)-1] {
		s.ix.add(ch, append(full, key[:i+1]...), line, false)
	}
	full = append(full, key...)
	s.ix.add(ch, full, line, true)
	s.skipSpace()
	s.value(full, ch, false)
}

// key reads a possibly dotted key made of bare, "basic" or 'literal' parts.
func (s *lineScanner) key() ([]string, bool) {
	var segs []string
	for {
		s.skipSpace()
		seg, ok := s.keySegment()
		if !ok {
			return segs, len(segs) > 0
		}
		segs = append(segs, seg)
		s.skipSpace()
		if s.peek() != '.' {
			return segs, true
		}
		s.pos++
	}
}

func (s *lineScanner) keySegment() (string, bool) {
	switch c := s.peek(); {
	case c == '"':
		return s.basicString(), true
	case c == '\'':
		s.pos++
		start := s.pos
		for s.pos < len(s.src) && s.src[s.pos] != '\'' && s.src[s.pos] != '\n' {
			s.pos++
		}
		seg := s.src[start:s.pos]
		if s.peek() == '\'' {
			s.pos++
		}
		return seg, true
	case isBareKeyChar(c):
		start := s.pos
		for s.pos < len(s.src) && isBareKeyChar(s.src[s.pos]) {
			s.pos++
		}
		return s.src[start:s.pos], true
	}
	return "", false
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// basicString reads a one-line "basic" string and returns it with the
// common escapes resolved (enough for keys).
func (s *lineScanner) basicString() string {
	s.pos++ // opening quote
	var b strings.Builder
	for s.pos < len(s.src) {
		c := s.src[s.pos]
		switch c {
		case '"':
			s.pos++
			return b.String()
		case '\n':
			return b.String()
		case '\\':
			if s.pos+1 < len(s.src) && s.src[s.pos+1] != '\n' {
				s.pos++
				switch e := s.src[s.pos]; e {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				default:
					b.WriteByte(e)
				}
			}
		default:
			b.WriteByte(c)
		}
		s.pos++
	}
	return b.String()
}

// value skips one value, recording the keys of inline tables under path.
// Keys inside arrays are not recorded (toml does not list them either).
func (s *lineScanner) value(path []string, ch int, inArray bool) {
	switch s.peek() {
	case '"', '\'':
		s.stringValue()
	case '[':
		s.pos++
		for {
			s.skipBlank()
			switch s.peek() {
			case 0:
				return
			case ']':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			start := s.pos
			s.value(path, ch, true)
			if s.pos == start {
				s.pos++
			}
		}
	case '{':
		s.pos++
		for {
			s.skipBlank()
			switch s.peek() {
			case 0:
				return
			case '}':
				s.pos++
				return
			case ',':
				s.pos++
				continue
			}
			start := s.pos
			line := s.line
			key, ok := s.key()
			if ok {
				s.skipSpace()
				if s.peek() == '=' {
					s.pos++
					full := append(append([]string(nil), path...), key...)
					if !inArray {
						for i := range key[:len(key)-1] {
							s.ix.add(ch, append(path[:len(path):len(path)], key[:i+1]...), line, false)
						}
						s.ix.add(ch, full, line, true)
					}
					s.skipSpace()
					s.value(full, ch, inArray)
				}
			}
			if s.pos == start {
				s.pos++
			}
		}
	default:
		// A bare scalar: number, boolean, date-time.
		for s.pos < len(s.src) && strings.IndexByte(",]}#\n", s.src[s.pos]) < 0 {
			s.pos++
		}
	}
}

// stringValue skips a basic, literal or multi-line string value.
func (s *lineScanner) stringValue() {
	q := s.src[s.pos]
	triple := strings.Repeat(string(q), 3)
	if strings.HasPrefix(s.src[s.pos:], triple) {
		s.pos += 3
		for s.pos < len(s.src) {
			switch {
			case q == '"' && s.src[s.pos] == '\\' && s.pos+1 < len(s.src):
				if s.src[s.pos+1] == '\n' {
					s.line++
				}
				s.pos += 2
			case strings.HasPrefix(s.src[s.pos:], triple):
				s.pos += 3
				for s.peek() == q { // up to two quotes may close the content
					s.pos++
				}
				return
			case s.src[s.pos] == '\n':
				s.line++
				s.pos++
			default:
				s.pos++
			}
		}
		return
	}
	if q == '"' {
		s.basicString()
		return
	}
	s.pos++
	for s.pos < len(s.src) && s.src[s.pos] != '\'' && s.src[s.pos] != '\n' {
		s.pos++
	}
	if s.peek() == '\'' {
		s.pos++
	}
}
