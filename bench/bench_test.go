package main

import (
	"bytes"
	"math"
	"net/mail"
	"testing"
	"time"
)

func TestQuantile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 10, 9, 8, 7, 6}
	for _, c := range []struct {
		q    float64
		want float64
	}{{0, 1}, {0.01, 1}, {0.5, 5}, {0.9, 9}, {0.99, 10}, {1, 10}} {
		if got := quantile(xs, c.q); got != c.want {
			t.Errorf("quantile(%v) = %v, want %v", c.q, got, c.want)
		}
	}
	if !math.IsNaN(quantile(nil, 0.5)) {
		t.Error("quantile of nothing is not NaN")
	}
	if xs[0] != 5 {
		t.Error("quantile sorted its input")
	}
}

func TestParseStatus(t *testing.T) {
	status := []byte("Name:\tmailgate\nVmPeak:\t 2000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   20480 kB\nThreads:\t9\n")
	rss, hwm, err := parseStatus(status)
	if err != nil || rss != 20<<20 || hwm != 50<<20 {
		t.Errorf("parseStatus = %d, %d, %v", rss, hwm, err)
	}
	if _, _, err := parseStatus([]byte("Name:\tx\nVmRSS:\t12 MB\n")); err == nil {
		t.Error("parseStatus accepted a unit other than kB")
	}
	if _, _, err := parseStatus([]byte("Name:\tx\n")); err == nil {
		t.Error("parseStatus accepted a status without VmRSS")
	}
}

func TestParseStatCPU(t *testing.T) {
	// The command name may hold spaces and parentheses.
	stat := []byte("4242 (mail gate (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 100 0 0")
	d, err := parseStatCPU(stat)
	if err != nil || d != 3*time.Second {
		t.Errorf("parseStatCPU = %v, %v; want 3s", d, err)
	}
	if _, err := parseStatCPU([]byte("4242 (x) S 1")); err == nil {
		t.Error("parseStatCPU accepted a short line")
	}
}

func TestParseGoBench(t *testing.T) {
	out := `goos: linux
pkg: mailgate/store
cpu: AMD EPYC
BenchmarkRecordInbound-2   	    2078	    488545 ns/op	    9483 B/op	     198 allocs/op
BenchmarkParse25MiB-2      	       5	 210000000 ns/op	        61.50 peak-heap-MiB	 1000 B/op	  10 allocs/op
PASS
ok  	mailgate/store	3.1s
pkg: mailgate/inbound
BenchmarkAnalyze/plain-2 	   10000	    105000 ns/op
`
	got := parseGoBench(out)
	if len(got) != 3 {
		t.Fatalf("parsed %d results, want 3: %+v", len(got), got)
	}
	if got[0].Pkg != "mailgate/store" || got[0].Name != "RecordInbound" || got[0].N != 2078 {
		t.Errorf("first = %+v", got[0])
	}
	if v, ok := got[1].metric("peak-heap-MiB"); !ok || v != 61.5 {
		t.Errorf("custom metric = %v, %v", v, ok)
	}
	if got[2].Pkg != "mailgate/inbound" || got[2].Name != "Analyze/plain" {
		t.Errorf("third = %+v", got[2])
	}
}

// TestBenchMail checks that generated mails parse, carry their marker and
// have about the size asked for.
func TestBenchMail(t *testing.T) {
	for _, m := range []benchMail{
		{Marker: marker("t", 1), From: "a@client.example.org", To: supportUser, Size: 2000, Rand: 1},
		{Marker: marker("t", 2), From: "b@client.example.org", To: supportUser, Size: 500, AttachLen: 10000, Rand: 2},
	} {
		raw := m.raw()
		msg, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("%s: %v", m.Marker, err)
		}
		if msg.Header.Get("From") == "" || !bytes.Contains(raw, []byte(m.Marker)) {
			t.Errorf("%s: no From or no marker", m.Marker)
		}
		if !markerRE.Match(raw) {
			t.Errorf("%s: markerRE does not find it", m.Marker)
		}
		min := m.Size + m.AttachLen*4/3
		if len(raw) < min || len(raw) > min+2000 {
			t.Errorf("%s: %d bytes, want about %d", m.Marker, len(raw), min)
		}
	}
	// The same mail twice is the same bytes but for the Date.
	a, b := backlogMail(19).raw(), backlogMail(19).raw()
	if len(a) != len(b) {
		t.Error("backlogMail is not deterministic")
	}
}
