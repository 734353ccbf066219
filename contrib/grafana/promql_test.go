package grafana_test

import (
	"fmt"
	"reflect"
	"regexp"
	"testing"
)

// promqlRefs is what a PromQL expression refers to.
type promqlRefs struct {
	metrics   []string // metric names, in order of appearance, repeated
	labels    []string // label names in matchers and grouping clauses
	functions []string // functions and aggregation operators
}

// promqlFunctions are the PromQL functions and aggregation operators the
// dashboard may use; anything else called like a function is an error.
var promqlFunctions = map[string]bool{
	"abs": true, "absent": true, "avg": true, "avg_over_time": true, "bottomk": true,
	"ceil": true, "changes": true, "clamp_max": true, "clamp_min": true, "count": true,
	"delta": true, "deriv": true, "floor": true, "group": true, "histogram_quantile": true,
	"increase": true, "irate": true, "label_replace": true, "max": true, "max_over_time": true,
	"min": true, "min_over_time": true, "quantile": true, "rate": true, "resets": true,
	"round": true, "scalar": true, "sort": true, "sort_desc": true, "stddev": true,
	"sum": true, "sum_over_time": true, "time": true, "timestamp": true, "topk": true,
	"vector": true,
}

// aggregations may be followed by a by/without clause before their
// parenthesised argument.
var aggregations = map[string]bool{
	"avg": true, "bottomk": true, "count": true, "group": true, "max": true, "min": true,
	"quantile": true, "stddev": true, "sum": true, "topk": true,
}

// groupingKeywords take a parenthesised list of label names.
var groupingKeywords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// operatorKeywords are PromQL words that are neither metrics nor functions.
var operatorKeywords = map[string]bool{
	"and": true, "or": true, "unless": true, "bool": true, "offset": true, "atan2": true, "inf": true, "nan": true,
}

// parsePromQL extracts metric, label and function names from a PromQL
// expression, as far as a dashboard check needs: string literals, range
// and subquery brackets and Grafana $variables are skipped, matchers are
// read for their label names. It reports unbalanced brackets and
// unterminated strings.
func parsePromQL(expr string) (promqlRefs, error) {
	var r promqlRefs
	s := expr
	depth := 0
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"' || c == '\'' || c == '`':
			end, err := skipString(s, i)
			if err != nil {
				return r, err
			}
			i = end
		case c == '{':
			end, labels, err := parseMatchers(s, i)
			if err != nil {
				return r, err
			}
			r.labels = append(r.labels, labels...)
			i = end
		case c == '}':
			return r, fmt.Errorf("promql: unbalanced } at %d in %q", i, expr)
		case c == '[':
			end := i + 1
			for end < len(s) && s[end] != ']' {
				end++
			}
			if end == len(s) {
				return r, fmt.Errorf("promql: unterminated [ at %d in %q", i, expr)
			}
			i = end + 1
		case c == ']':
			return r, fmt.Errorf("promql: unbalanced ] at %d in %q", i, expr)
		case c == '(':
			depth++
			i++
		case c == ')':
			depth--
			if depth < 0 {
				return r, fmt.Errorf("promql: unbalanced ) at %d in %q", i, expr)
			}
			i++
		case c == '$':
			// A Grafana variable: $name, ${name} or ${name:format}.
			i++
			if i < len(s) && s[i] == '{' {
				for i < len(s) && s[i] != '}' {
					i++
				}
				i++
			} else {
				for i < len(s) && isIdentByte(s[i], false) {
					i++
				}
			}
		case c >= '0' && c <= '9' || c == '.':
			// A number or duration: 0.99, 1e3, 5m.
			for i < len(s) && (isIdentByte(s[i], false) || s[i] == '.') {
				i++
			}
		case isIdentByte(c, true):
			start := i
			for i < len(s) && isIdentByte(s[i], false) {
				i++
			}
			word := s[start:i]
			next := skipSpace(s, i)
			paren := next < len(s) && s[next] == '('
			switch {
			case groupingKeywords[word]:
				if !paren {
					// group_left and group_right may stand alone.
					continue
				}
				end := next + 1
				for end < len(s) && s[end] != ')' {
					end++
				}
				if end == len(s) {
					return r, fmt.Errorf("promql: unterminated %s ( in %q", word, expr)
				}
				for _, l := range identRe.FindAllString(s[next+1:end], -1) {
					r.labels = append(r.labels, l)
				}
				i = end + 1
			case operatorKeywords[word]:
			case paren:
				r.functions = append(r.functions, word)
			case aggregations[word] && startsGrouping(s, next):
				r.functions = append(r.functions, word)
			default:
				r.metrics = append(r.metrics, word)
			}
		default:
			i++
		}
	}
	if depth != 0 {
		return r, fmt.Errorf("promql: %d unclosed ( in %q", depth, expr)
	}
	return r, nil
}

// identRe matches label names in a grouping list.
var identRe = regexp.MustCompile(`[a-zA-Z_][a-zA-Z0-9_]*`)

// labelNameRe matches a label name at the start of a string.
var labelNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*`)

// isIdentByte reports whether c may appear in a metric name (at its start
// when first is set).
func isIdentByte(c byte, first bool) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == ':' {
		return true
	}
	return !first && c >= '0' && c <= '9'
}

// skipSpace returns the index of the first non-space byte at or after i.
func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// startsGrouping reports whether a by or without clause starts at i.
func startsGrouping(s string, i int) bool {
	for _, kw := range []string{"by", "without"} {
		if len(s) >= i+len(kw) && s[i:i+len(kw)] == kw {
			j := i + len(kw)
			if j == len(s) || !isIdentByte(s[j], false) {
				return true
			}
		}
	}
	return false
}

// skipString returns the index just after the string literal at i.
func skipString(s string, i int) (int, error) {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch {
		case s[j] == '\\' && q != '`':
			j++
		case s[j] == q:
			return j + 1, nil
		}
	}
	return 0, fmt.Errorf("promql: unterminated string at %d in %q", i, s)
}

// parseMatchers reads the label matchers starting at the '{' at i and
// returns the index after the closing '}' and the label names.
func parseMatchers(s string, i int) (int, []string, error) {
	var labels []string
	j := i + 1
	for {
		j = skipSpace(s, j)
		if j >= len(s) {
			return 0, nil, fmt.Errorf("promql: unterminated { at %d in %q", i, s)
		}
		if s[j] == '}' {
			return j + 1, labels, nil
		}
		name := labelNameRe.FindString(s[j:])
		if name == "" {
			return 0, nil, fmt.Errorf("promql: want a label name at %d in %q", j, s)
		}
		labels = append(labels, name)
		j = skipSpace(s, j+len(name))
		switch {
		case j+1 < len(s) && (s[j:j+2] == "=~" || s[j:j+2] == "!=" || s[j:j+2] == "!~"):
			j += 2
		case j < len(s) && s[j] == '=':
			j++
		default:
			return 0, nil, fmt.Errorf("promql: want =, !=, =~ or !~ after label %s in %q", name, s)
		}
		j = skipSpace(s, j)
		if j >= len(s) || (s[j] != '"' && s[j] != '\'' && s[j] != '`') {
			return 0, nil, fmt.Errorf("promql: want a quoted value for label %s in %q", name, s)
		}
		end, err := skipString(s, j)
		if err != nil {
			return 0, nil, err
		}
		j = skipSpace(s, end)
		if j < len(s) && s[j] == ',' {
			j++
		}
	}
}

func TestParsePromQL(t *testing.T) {
	tests := []struct {
		expr    string
		want    promqlRefs
		wantErr bool
	}{{
		expr: `up`,
		want: promqlRefs{metrics: []string{"up"}},
	}, {
		expr: `sum by (outcome) (rate(mailgate_inbound_messages_total{job=~"$job",channel=~"$channel"}[$__rate_interval]))`,
		want: promqlRefs{
			metrics:   []string{"mailgate_inbound_messages_total"},
			labels:    []string{"outcome", "job", "channel"},
			functions: []string{"sum", "rate"},
		},
	}, {
		expr: `histogram_quantile(0.99, sum by (le) (rate(x_bucket{c="a,b}"}[5m])))`,
		want: promqlRefs{
			metrics:   []string{"x_bucket"},
			labels:    []string{"le", "c"},
			functions: []string{"histogram_quantile", "sum", "rate"},
		},
	}, {
		expr: `time() - max without(instance) (last_sync)`,
		want: promqlRefs{
			metrics:   []string{"last_sync"},
			labels:    []string{"instance"},
			functions: []string{"time", "max"},
		},
	}, {
		expr: `a / on(channel) group_left b offset 5m and bool c`,
		want: promqlRefs{metrics: []string{"a", "b", "c"}, labels: []string{"channel"}},
	}, {
		expr: `sum(rate(a[5m:1m])) by (x)`,
		want: promqlRefs{metrics: []string{"a"}, labels: []string{"x"}, functions: []string{"sum", "rate"}},
	}, {
		expr: `${datasource} + 1e3 * 0.5`,
		want: promqlRefs{},
	}, {
		expr: `{__name__=~"mailgate_.*"}`,
		want: promqlRefs{labels: []string{"__name__"}},
	},
		{expr: `rate(a[5m]`, wantErr: true},
		{expr: `a{b="c"`, wantErr: true},
		{expr: `a{b}`, wantErr: true},
		{expr: `a{b=c}`, wantErr: true},
		{expr: `a{b="c}`, wantErr: true},
		{expr: `a[5m`, wantErr: true},
		{expr: `a)`, wantErr: true},
		{expr: `a}`, wantErr: true},
	}
	for _, tt := range tests {
		got, err := parsePromQL(tt.expr)
		if tt.wantErr {
			if err == nil {
				t.Errorf("parsePromQL(%q) = %+v, want an error", tt.expr, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("parsePromQL(%q): %v", tt.expr, err)
			continue
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("parsePromQL(%q) =\n\t%+v, want\n\t%+v", tt.expr, got, tt.want)
		}
	}
}

// FuzzParsePromQL checks that the extractor neither panics nor loops, and
// that what it returns are names.
func FuzzParsePromQL(f *testing.F) {
	f.Add(`sum by (outcome) (rate(mailgate_inbound_messages_total{channel=~"$channel"}[$__rate_interval]))`)
	f.Add(`histogram_quantile(0.5, sum by (le) (rate(x_bucket[5m])))`)
	f.Add(`a{b="\"}"} / on(c) group_left d`)
	f.Add(`${x:raw}{`)
	f.Add("`")
	name := regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	f.Fuzz(func(t *testing.T, expr string) {
		r, err := parsePromQL(expr)
		if err != nil {
			return
		}
		for _, group := range [][]string{r.metrics, r.labels, r.functions} {
			for _, n := range group {
				if !name.MatchString(n) {
					t.Fatalf("parsePromQL(%q): %q is not a name", expr, n)
				}
			}
		}
	})
}
