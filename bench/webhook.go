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
	ul, err := startFakeUserlike()
	if err != nil {
		return err
	}
	defer ul.close()
	rates, p50s, all, bad, err := b.webhookRuns(ctx, ul, "")
	if err != nil {
		return err
	}
	runs := fmt.Sprintf("%d runs of %v", b.opts.reps, b.opts.webhookD)
	b.add("webhook",
		row{Figure: fmt.Sprintf("durable 200s per second, %d connections, 200-byte texts", webhookConns), Median: unit(quantile(rates, 0.5), "/s"), P99: unit(quantile(rates, 0.01), "/s") + " (slowest)", Runs: runs, Target: "> 3,000/s", Met: yesNo(quantile(rates, 0.5) > 3000)},
		row{Figure: "latency of a 200", Median: unit(quantile(p50s, 0.5), "ms"), P99: unit(quantile(all, 0.99), "ms"), Runs: fmt.Sprintf("%d requests", len(all))},
	)
	if b.opts.postgres {
		pgRates, pgP50s, pgAll, pgBad, err := b.webhookRuns(ctx, ul, "pg")
		if err != nil {
			return fmt.Errorf("postgres: %w", err)
		}
		bad += pgBad
		b.add("webhook",
			row{Figure: "store in PostgreSQL: durable 200s per second", Median: unit(quantile(pgRates, 0.5), "/s"), P99: unit(quantile(pgRates, 0.01), "/s") + " (slowest)", Runs: runs},
			row{Figure: "store in PostgreSQL: latency of a 200", Median: unit(quantile(pgP50s, 0.5), "ms"), P99: unit(quantile(pgAll, 0.99), "ms"), Runs: fmt.Sprintf("%d requests", len(pgAll))},
			row{Figure: "PostgreSQL / SQLite store (webhook rate ratio)", Median: fmt.Sprintf("%.2fx", quantile(pgRates, 0.5)/quantile(rates, 0.5)), Runs: runs},
		)
	}
	if bad > 0 {
		b.note("webhook", fmt.Sprintf("%d answers other than 200 queued", bad))
	}
	b.note("webhook", "A Go load generator in the harness process (32 goroutines, one keep-alive connection each) posts operator messages, each with a new message id and contact; only a 200 with status \"queued\" counts, which mailgate sends after the outbox commit. smtp.coalesce is 60 s so that no reply is mailed during a run. The load generator shares the 2 cores with mailgate.")
	return nil
}

// webhookRuns runs the webhook load b.opts.reps times against a new
// daemon each; with store "pg" the daemon's store is a new PostgreSQL
// database.
func (b *bench) webhookRuns(ctx context.Context, ul *fakeUserlike, store string) (rates, p50s, all []float64, bad int, err error) {
	m := b.mail
	for r := range b.opts.reps {
		name := fmt.Sprintf("webhook-%d", r)
		var dsn string
		if store == "pg" {
			name = fmt.Sprintf("webhook-pg-%d", r)
			if dsn, err = b.postgresDB(ctx); err != nil {
				return nil, nil, nil, 0, err
			}
		}
		g, err := b.startMailgate(name, daemonConfig{
			IMAPAddr: m.imapAddr(), User: "jane@example.test", Password: m.password(),
			SMTPAddr: m.smtpAddr(), InboundURL: ul.url(), PostgresDSN: dsn,
			// Nothing is due during the run: the webhook alone is measured.
			Coalesce: "60s",
		})
		if err != nil {
			return nil, nil, nil, 0, err
		}
		if _, err := g.waitReady(30 * time.Second); err != nil {
			g.stop()
			return nil, nil, nil, 0, err
		}
		run := fmt.Sprintf("wh%x", rand.Uint32())
		lat, nbad, err := webhookLoad(ctx, "http://"+g.listen+"/userlike/support", webhookConns, b.opts.webhookD, run)
		if serr := g.stop(); err == nil && serr != nil {
			err = fmt.Errorf("stop: %w", serr)
		}
		if err != nil {
			return nil, nil, nil, 0, err
		}
		ms := msOf(lat)
		rates = append(rates, float64(len(lat))/b.opts.webhookD.Seconds())
		p50s = append(p50s, quantile(ms, 0.5))
		all = append(all, ms...)
		bad += nbad
		fmt.Fprintf(os.Stderr, "bench:   run %d %s: %.0f 200/s, p50 %.1f ms, p99 %.1f ms\n", r+1, store, rates[r], p50s[r], quantile(ms, 0.99))
	}
	return rates, p50s, all, bad, nil
}
