package config

import "strings"

// The toml package reports where a syntax error is, but not where a key
// was written (its MetaData keeps one position per key name, so the keys of
// the second [[channel]] hide those of the first). lineIndex fills that gap
// for error messages: it reads the file line by line, follows table
// headers ([server], [[channel]], [channel.imap]) and `key = value` lines
// (dotted keys too), and skips multi-line strings. A key inside an inline
// table or a multi-line array resolves to the line of the key that holds
// it. It never fails: toml's parser judges validity, this index only
// places messages.

// pathAt names a key path within one [[channel]] occurrence (or -1).
type pathAt struct {
	ch   int
	path string
}

// joinPath turns key segments into a map key.
func joinPath(segs []string) string { return strings.Join(segs, "\x00") }

// lineIndex maps key paths to the lines where they are written.
type lineIndex struct {
	first map[pathAt]int // first line of a path within a channel occurrence
	anyCh map[string]int // first line of a path in any occurrence
}

// indexLines indexes the keys of a TOML document.
func indexLines(src string) *lineIndex {
	ix := &lineIndex{first: make(map[pathAt]int), anyCh: make(map[string]int)}
	src = strings.TrimPrefix(src, "\ufeff") // a byte order mark, as toml skips it
	ch, table := -1, []string(nil)
	closing := "" // the delimiter that ends the multi-line string being skipped
	for n, line := range strings.Split(src, "\n") {
		n++
		s := strings.TrimSpace(line)
		if closing != "" {
			if strings.Contains(s, closing) {
				closing = ""
			}
			continue
		}
		var path []string
		switch {
		case strings.HasPrefix(s, "[["):
			path, _, _ = splitKey(s[2:], "]]")
			if len(path) == 1 && path[0] == "channel" {
				ch++
			}
			table = path
		case strings.HasPrefix(s, "["):
			path, _, _ = splitKey(s[1:], "]")
			table = path
		default:
			k, rest, ok := splitKey(s, "=")
			if !ok {
				continue
			}
			path = append(table[:len(table):len(table)], k...)
			rest = strings.TrimSpace(rest)
			for _, d := range []string{`"""`, `'''`} {
				if strings.HasPrefix(rest, d) && !strings.Contains(rest[3:], d) {
					closing = d
				}
			}
		}
		c := -1
		if len(path) > 0 && path[0] == "channel" {
			c = ch
		}
		for i := 1; i <= len(path); i++ { // a dotted key also writes its parents
			j := joinPath(path[:i])
			if _, ok := ix.first[pathAt{c, j}]; !ok {
				ix.first[pathAt{c, j}] = n
			}
			if _, ok := ix.anyCh[j]; !ok {
				ix.anyCh[j] = n
			}
		}
	}
	return ix
}

// splitKey reads a dotted key (bare, "basic" or 'literal' segments) at the
// start of s, followed by end. It returns the segments and what follows
// end; ok is false when s does not start that way.
func splitKey(s, end string) (path []string, rest string, ok bool) {
	for {
		s = strings.TrimLeft(s, " \t")
		var seg string
		switch {
		case s == "":
			return nil, "", false
		case s[0] == '"' || s[0] == '\'':
			i := 1
			for i < len(s) && s[i] != s[0] {
				if s[0] == '"' && s[i] == '\\' {
					i++
				}
				i++
			}
			if i >= len(s) {
				return nil, "", false
			}
			seg, s = s[1:i], s[i+1:]
		default:
			i := strings.IndexFunc(s, func(r rune) bool {
				return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-')
			})
			if i <= 0 {
				return nil, "", false
			}
			seg, s = s[:i], s[i:]
		}
		path = append(path, seg)
		s = strings.TrimLeft(s, " \t")
		if rest, ok := strings.CutPrefix(s, end); ok {
			return path, rest, true
		}
		if !strings.HasPrefix(s, ".") {
			return nil, "", false
		}
		s = s[1:]
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
