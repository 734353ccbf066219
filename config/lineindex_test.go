package config

import (
	"strings"
	"testing"
)

func TestLineIndex(t *testing.T) {
	src := strings.Join([]string{
		`# comment [not.a.table]`, // 1
		`top = "a" # x = 1`,       // 2
		`[server]`,                // 3
		`text = """`,              // 4
		`[fake]`,                  // 5
		`key = 1"""`,              // 6
		`list = [`,                // 7
		`  "a", # [fake2]`,        // 8
		`  'b',`,                  // 9
		`]`,                       // 10
		`listen = "x"`,            // 11
		`[[channel]]`,             // 12
		`name = "one"`,            // 13
		`imap = { address = "h:1", tls.mode = 'x' }`, // 14
		`[ channel . "smtp" ]`,                       // 15
		`from = "a@b.c"`,                             // 16
		`[[channel]]`,                                // 17
		`imap.address = "h:2"`,                       // 18
		`[channel.imap]`,                             // 19
		`folders = ["INBOX"]`,                        // 20
		`[log]`,                                      // 21
		`level = 'x'`,                                // 22
	}, "\n")
	ix := indexLines(src)
	tests := []struct {
		ch   int
		path string
		want int
	}{
		{-1, "top", 2},
		{-1, "x", 0},
		{-1, "server", 3},
		{-1, "server.text", 4},
		{-1, "fake", 0},
		{-1, "fake.key", 0},
		{-1, "server.list", 7},
		{-1, "server.listen", 11},
		{0, "channel", 12},
		{0, "channel.name", 13},
		{0, "channel.imap.address", 14},
		{0, "channel.imap.tls.mode", 14},
		{0, "channel.smtp.from", 16},
		{0, "channel.smtp.username", 15}, // missing: its table's line
		{1, "channel.imap.address", 18},
		{1, "channel.imap.folders", 20},
		{1, "channel.name", 17}, // missing: the [[channel]] line
		{1, "channel.smtp.from", 17},
		{-1, "log.level", 22},
	}
	for _, tt := range tests {
		path := strings.Split(tt.path, ".")
		if got := ix.line(tt.ch, path); got != tt.want {
			t.Errorf("line(%d, %s) = %d, want %d", tt.ch, tt.path, got, tt.want)
		}
	}
}

func FuzzIndexLines(f *testing.F) {
	f.Add("[[channel]]\nimap = { a = [1, {b = 2}], 'c'.\"d\" = \"\"\"\n\"\"\" }\n")
	f.Add("a = '''\n''''\nb = [\n# ]\n]\n")
	f.Fuzz(func(t *testing.T, src string) {
		ix := indexLines(src)
		for k, line := range ix.first {
			if line < 1 || line > strings.Count(src, "\n")+1 {
				t.Fatalf("%q: line %d out of range", k.path, line)
			}
		}
	})
}
