package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// webhookConns is the number of concurrent keep-alive connections.
const webhookConns = 32

// webhookLoad posts operator messages over conns connections for d and
// returns the latencies of the 200 answers and the count of other answers.
func webhookLoad(ctx context.Context, url string, conns int, d time.Duration, run string) (lat []time.Duration, bad int, err error) {
	text := strings.Repeat("Thanks for waiting, we have looked at your order. ", 4)[:200]
	var mu sync.Mutex
	var wg sync.WaitGroup
	var firstErr error
	deadline := time.Now().Add(d)
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			tr := &http.Transport{MaxIdleConnsPerHost: 1, MaxConnsPerHost: 1, DisableCompression: true}
			defer tr.CloseIdleConnections()
			client := &http.Client{Transport: tr, Timeout: 30 * time.Second}
			var mine []time.Duration
			var myBad int
			for i := 0; time.Now().Before(deadline) && ctx.Err() == nil; i++ {
				body := fmt.Sprintf(`{"id":"%s-%d-%d","email":"w%d-%d-%s@client.example.org","text":%q,"operator_name":"Olga"}`,
					run, c, i, c, i, run, text)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
				req.Header.Set("API-SECURITY-TOKEN", outboundToken)
				req.Header.Set("Content-Type", "application/json")
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					mu.Lock()
					if firstErr == nil && ctx.Err() == nil {
						firstErr = err
					}
					mu.Unlock()
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK && bytes.Contains(b, []byte(`"queued"`)) {
					mine = append(mine, time.Since(t0))
				} else {
					myBad++
				}
			}
			mu.Lock()
			lat = append(lat, mine...)
			bad += myBad
			mu.Unlock()
		}()
	}
	wg.Wait()
	return lat, bad, firstErr
}

// runWebhook measures durable webhook acceptance: 200 answers per second
// (each after its outbox commit) and their latency.
func (b *bench) runWebhook(ctx context.Context) error {
	m := b.mail
	ul, err := startFakeUserlike()
	if err != nil {
		return err
	}
	defer ul.close()
	var rates, p50s, p99s []float64
	var all []float64
	bad := 0
	for r := range b.opts.reps {
		g, err := b.startMailgate(fmt.Sprintf("webhook-%d", r), daemonConfig{
			IMAPAddr: m.imapAddr(), User: "jane@example.test", Password: m.password(),
			SMTPAddr: m.smtpAddr(), InboundURL: ul.url(),
			// Nothing is due during the run: the webhook alone is measured.
			Coalesce: "60s",
		})
		if err != nil {
			return err
		}
		if _, err := g.waitReady(30 * time.Second); err != nil {
			g.stop()
			return err
		}
		run := fmt.Sprintf("wh%x", rand.Uint32())
		lat, nbad, err := webhookLoad(ctx, "http://"+g.listen+"/userlike/support", webhookConns, b.opts.webhookD, run)
		if serr := g.stop(); err == nil && serr != nil {
			err = fmt.Errorf("stop: %w", serr)
		}
		if err != nil {
			return err
		}
		ms := msOf(lat)
		rates = append(rates, float64(len(lat))/b.opts.webhookD.Seconds())
		p50s = append(p50s, quantile(ms, 0.5))
		p99s = append(p99s, quantile(ms, 0.99))
		all = append(all, ms...)
		bad += nbad
		fmt.Fprintf(os.Stderr, "bench:   run %d: %.0f 200/s, p50 %.1f ms, p99 %.1f ms\n", r+1, rates[r], p50s[r], p99s[r])
	}
	runs := fmt.Sprintf("%d runs of %v", b.opts.reps, b.opts.webhookD)
	b.add("webhook",
		row{Figure: fmt.Sprintf("durable 200s per second, %d connections, 200-byte texts", webhookConns), Median: unit(quantile(rates, 0.5), "/s"), P99: unit(quantile(rates, 0.01), "/s") + " (slowest)", Runs: runs, Target: "> 3,000/s", Met: yesNo(quantile(rates, 0.5) > 3000)},
		row{Figure: "latency of a 200", Median: unit(quantile(p50s, 0.5), "ms"), P99: unit(quantile(all, 0.99), "ms"), Runs: fmt.Sprintf("%d requests", len(all))},
	)
	if bad > 0 {
		b.note("webhook", fmt.Sprintf("%d answers other than 200 queued", bad))
	}
	b.note("webhook", "A Go load generator in the harness process (32 goroutines, one keep-alive connection each) posts operator messages, each with a new message id and contact; only a 200 with status \"queued\" counts, which mailgate sends after the outbox commit. smtp.coalesce is 60 s so that no reply is mailed during a run. The load generator shares the 2 cores with mailgate.")
	return nil
}
