package mailtext

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fixtures in testdata/replies are replies as mail clients write them,
// one file per client and language: NAME.txt is the body, NAME.want the text
// that Trim must keep. NAME is CLIENT_LANGUAGE[_VARIANT]; a VARIANT of
// "fw-subject" stands for a forward by its subject, trimmed with
// Options.Forwarded.

// fixtureMinimums is how many clients and languages the fixtures must cover.
const (
	fixtureMinClients   = 12
	fixtureMinLanguages = 10
)

func TestReplyFixtures(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "replies", "*.txt"))
	if err != nil {
		t.Fatal(err)
	}
	clients, languages := map[string]bool{}, map[string]bool{}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".txt")
		parts := strings.Split(name, "_")
		if len(parts) < 2 {
			t.Errorf("%s: want a name CLIENT_LANGUAGE[_VARIANT]", file)
			continue
		}
		clients[parts[0]], languages[parts[1]] = true, true
		t.Run(name, func(t *testing.T) {
			in, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(strings.TrimSuffix(file, ".txt") + ".want")
			if err != nil {
				t.Fatal(err)
			}
			got := TrimWith(string(in), Options{Forwarded: strings.HasSuffix(name, "_fw-subject")})
			if w := strings.TrimSuffix(string(want), "\n"); got.Text != w {
				t.Errorf("Text =\n%s\n---- want ----\n%s\n---- cuts: %+v", got.Text, w, got.Cuts)
			}
			if got.Trimmed != (len(got.Cuts) > 0 && got.Cuts[0].Rule != RuleQuoteOnly) {
				t.Errorf("Trimmed = %v with cuts %+v", got.Trimmed, got.Cuts)
			}
			if again := Trim(got.Text).Text; again != got.Text {
				t.Errorf("trimming again gives\n%s", again)
			}
		})
	}
	if len(clients) < fixtureMinClients || len(languages) < fixtureMinLanguages {
		t.Errorf("fixtures cover %d clients and %d languages, want %d and %d", len(clients), len(languages), fixtureMinClients, fixtureMinLanguages)
	}
}

// BenchmarkTrimFixtures trims every reply fixture once per iteration.
func BenchmarkTrimFixtures(b *testing.B) {
	files, _ := filepath.Glob(filepath.Join("testdata", "replies", "*.txt"))
	var ins []string
	size := 0
	for _, file := range files {
		in, err := os.ReadFile(file)
		if err != nil {
			b.Fatal(err)
		}
		ins = append(ins, string(in))
		size += len(in)
	}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		for _, in := range ins {
			Trim(in)
		}
	}
}
