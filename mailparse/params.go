package mailparse

import (
	"sort"
	"strconv"
	"strings"
)

// headerValue is a parsed Content-Type or Content-Disposition value: a
// lower-cased token plus its parameters, keys lower-cased, values decoded
// to UTF-8.
type headerValue struct {
	value  string
	params map[string]string
}

// param returns the named parameter ("" if absent).
func (v headerValue) param(name string) string { return v.params[name] }

// parseHeaderValue parses "token; k=v; k*=charset'lang'pct; k*0*=..." the
// way real mailers write it rather than the way RFC 2045 wants it: quoting
// mistakes, stray semicolons and unquoted spaces are tolerated. RFC 2231
// extended values and continuations are joined and converted from their
// declared charset; plain values may carry RFC 2047 encoded-words. The
// returned problem is non-empty when something had to be guessed.
func parseHeaderValue(s string) (headerValue, string) {
	var problem string
	token, rest, _ := strings.Cut(s, ";")
	hv := headerValue{value: strings.ToLower(strings.TrimSpace(token))}
	raw := map[string]string{}
	for rest != "" {
		rest = strings.TrimLeft(rest, " \t\r\n;")
		if rest == "" {
			break
		}
		eq := strings.IndexAny(rest, "=;")
		if eq < 0 || rest[eq] == ';' {
			// A parameter without a value: skip it.
			if eq < 0 {
				break
			}
			rest = rest[eq:]
			problem = "parameter without value"
			continue
		}
		key := strings.ToLower(strings.TrimSpace(rest[:eq]))
		rest = strings.TrimLeft(rest[eq+1:], " \t\r\n")
		var val string
		if strings.HasPrefix(rest, `"`) {
			var b strings.Builder
			i := 1
			closed := false
			for ; i < len(rest); i++ {
				c := rest[i]
				if c == '\\' && i+1 < len(rest) {
					i++
					b.WriteByte(rest[i])
					continue
				}
				if c == '"' {
					closed = true
					i++
					break
				}
				b.WriteByte(c)
			}
			if !closed {
				problem = "unterminated quoted parameter"
			}
			val = b.String()
			rest = rest[i:]
			// Anything between the closing quote and the next ';' is junk.
			if j := strings.IndexByte(rest, ';'); j >= 0 {
				rest = rest[j:]
			} else {
				rest = ""
			}
		} else {
			j := strings.IndexByte(rest, ';')
			if j < 0 {
				j = len(rest)
			}
			val = strings.TrimSpace(rest[:j])
			rest = rest[j:]
		}
		if key == "" {
			continue
		}
		if _, dup := raw[key]; !dup {
			raw[key] = val
		}
	}
	hv.params = joinParams(raw)
	return hv, problem
}

// rfc2231Segment is one piece of a parameter continuation (name*N or
// name*N*).
type rfc2231Segment struct {
	n       int
	encoded bool
	value   string
}

// joinParams resolves RFC 2231 extended parameters and continuations and
// decodes RFC 2047 encoded-words in plain values. An extended form wins over
// a plain value of the same name.
func joinParams(raw map[string]string) map[string]string {
	out := make(map[string]string, len(raw))
	// Made on first use: most values have no extended parameters.
	var segments map[string][]rfc2231Segment
	var extended map[string]bool
	setExtended := func(name string) {
		if extended == nil {
			extended = make(map[string]bool)
		}
		extended[name] = true
	}
	for key, val := range raw {
		name, suffix, hasStar := strings.Cut(key, "*")
		if !hasStar {
			if _, ok := out[name]; !ok || !extended[name] {
				out[name] = decodeWords(val)
			}
			continue
		}
		if suffix == "" {
			// name*=charset'lang'value
			out[name] = decode2231(val)
			setExtended(name)
			continue
		}
		encoded := strings.HasSuffix(suffix, "*")
		n, err := strconv.Atoi(strings.TrimSuffix(suffix, "*"))
		if err != nil || n < 0 || n > 1000 {
			continue
		}
		if segments == nil {
			segments = make(map[string][]rfc2231Segment)
		}
		segments[name] = append(segments[name], rfc2231Segment{n: n, encoded: encoded, value: val})
	}
	for name, segs := range segments {
		sort.Slice(segs, func(i, j int) bool { return segs[i].n < segs[j].n })
		// The charset comes from segment 0 when it is encoded.
		cs := ""
		var b []byte
		for i, seg := range segs {
			if seg.n != i {
				break // gap or duplicate: keep what is contiguous
			}
			v := seg.value
			if seg.encoded {
				if i == 0 {
					var ok bool
					cs, v, ok = split2231(v)
					if !ok {
						v = seg.value
					}
				}
				b = append(b, percentDecode(v)...)
			} else {
				b = append(b, v...)
			}
		}
		if segs[0].n != 0 {
			continue // no segment 0: nothing usable
		}
		out[name] = toUTF8(cs, b)
		setExtended(name)
	}
	return out
}

// split2231 splits "charset'lang'value" into charset and value.
func split2231(v string) (charset, value string, ok bool) {
	first := strings.IndexByte(v, '\'')
	if first < 0 {
		return "", v, false
	}
	second := strings.IndexByte(v[first+1:], '\'')
	if second < 0 {
		return "", v, false
	}
	return strings.TrimSpace(v[:first]), v[first+1+second+1:], true
}

// decode2231 decodes a single extended value "charset'lang'pct-encoded".
func decode2231(v string) string {
	cs, value, ok := split2231(v)
	if !ok {
		return toUTF8("", percentDecode(v))
	}
	return toUTF8(cs, percentDecode(value))
}

// percentDecode decodes %XX escapes and keeps malformed ones literally.
func percentDecode(s string) []byte {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '%' && i+2 < len(s) {
			hi, ok1 := unhex(s[i+1])
			lo, ok2 := unhex(s[i+2])
			if ok1 && ok2 {
				b = append(b, hi<<4|lo)
				i += 2
				continue
			}
		}
		b = append(b, c)
	}
	return b
}

// unhex decodes one hexadecimal digit.
func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}
