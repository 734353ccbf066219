package main

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

func scrape(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitScrape waits until url answers with code and a body containing want.
func waitScrape(t *testing.T, url string, code int, want string) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		got, body := scrape(t, url)
		if got == code && strings.Contains(body, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d, want %d with %q; body:\n%s", url, got, code, want, body)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestDaemonMetricsAndReadiness(t *testing.T) {
	e := newTestEnv(t, "")
	e.deliver(customerMail("jane@example.test", "Jane", "x1@example.test", "M", "hello"))
	e.deliver("From: x@example.test\nAuto-Submitted: auto-replied\nSubject: Out of office\n\naway\n")
	e.start()
	e.ul.waitPosts(1)
	base := "http://" + e.metricsAddr
	waitScrape(t, base+"/metrics", 200, `mailgate_inbound_messages_total{channel="support",outcome="posted"} 1`)
	waitScrape(t, base+"/metrics", 200, `mailgate_inbound_skipped_total{channel="support",reason="auto_reply"} 1`)
	waitScrape(t, base+"/metrics", 200, `mailgate_imap_connected{channel="support"} 1`)
	waitScrape(t, base+"/metrics", 200, `mailgate_inbound_delivery_seconds_count{channel="support"} 1`)
	// The POST passed at least one barrier, and the migrations one more.
	_, body := scrape(t, base+"/metrics")
	if m := regexp.MustCompile(`(?m)^mailgate_store_wal_fsyncs_total (\d+)$`).FindStringSubmatch(body); m == nil {
		t.Errorf("no mailgate_store_wal_fsyncs_total in /metrics")
	} else if n, _ := strconv.Atoi(m[1]); n < 2 {
		t.Errorf("mailgate_store_wal_fsyncs_total %d, want at least 2", n)
	}
	if !regexp.MustCompile(`(?m)^mailgate_store_tx_retries_total 0$`).MatchString(body) {
		t.Errorf("no mailgate_store_tx_retries_total 0 in /metrics (SQLite runs no transaction again)")
	}
	waitScrape(t, base+"/healthz", 200, `"ok"`)
	waitScrape(t, base+"/readyz", 200, `"ready"`)

	// IMAP goes away: the gauge drops; the channel is within its backoff,
	// so it still counts as ready.
	e.mail.StopIMAP()
	waitScrape(t, base+"/metrics", 200, `mailgate_imap_connected{channel="support"} 0`)
	waitScrape(t, base+"/readyz", 200, `"ready"`)
}

func TestDaemonNotReadyWhenLoginRefused(t *testing.T) {
	e := newTestEnv(t, "")
	cfg := strings.Replace(readFile(t, e.cfgPath), `password = "`+supportPass+`"`, `password = "wrong"`, 1)
	writeFile(t, e.cfgPath, cfg)
	e.start()
	waitScrape(t, "http://"+e.metricsAddr+"/readyz", 503, "IMAP login refused")
}
