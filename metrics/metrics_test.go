package metrics_test

import (
	"bufio"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"mailgate/metrics"
)

// scrape fetches /metrics from srv and returns its samples keyed by the
// series as printed (`name{label="v",...}`).
func scrape(t *testing.T, srv *httptest.Server) map[string]float64 {
	t.Helper()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET /metrics: status %d: %s", resp.StatusCode, b)
	}
	samples := make(map[string]float64)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("GET /metrics: malformed line %q", line)
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("GET /metrics: line %q: %v", line, err)
		}
		samples[line[:i]] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("GET /metrics: read: %v", err)
	}
	return samples
}

// serve starts an httptest server on loopback for m.
func serve(t *testing.T, m *metrics.Metrics) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(m.Handler(nil))
	t.Cleanup(srv.Close)
	return srv
}

// wantSamples checks that every series in want is present in got with the
// given value.
func wantSamples(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("series %s missing from scrape", k)
			continue
		}
		if math.Abs(g-w) > 1e-9 {
			t.Errorf("series %s = %v, want %v", k, g, w)
		}
	}
}

func TestCounters(t *testing.T) {
	tests := []struct {
		name string
		do   func(m *metrics.Metrics)
		want map[string]float64
	}{{
		name: "init channel creates zero series",
		do:   func(m *metrics.Metrics) { m.InitChannel("support") },
		want: map[string]float64{
			`mailgate_inbound_messages_total{channel="support",outcome="posted"}`:      0,
			`mailgate_inbound_messages_total{channel="support",outcome="dead"}`:        0,
			`mailgate_outbound_messages_total{channel="support",outcome="cancelled"}`:  0,
			`mailgate_charset_fallbacks_total{channel="support"}`:                      0,
			`mailgate_inbound_delivery_seconds_count{channel="support"}`:               0,
			`mailgate_outbound_delivery_seconds_bucket{channel="support",le="+Inf"}`:   0,
			`mailgate_inbound_delivery_seconds_bucket{channel="support",le="3600"}`:    0,
			`mailgate_inbound_delivery_seconds_bucket{channel="support",le="0.01"}`:    0,
			`mailgate_outbound_messages_total{channel="support",outcome="retried"}`:    0,
			`mailgate_inbound_messages_total{channel="support",outcome="quarantined"}`: 0,
		},
	}, {
		name: "inbound outcomes",
		do: func(m *metrics.Metrics) {
			m.Inbound("support", metrics.InboundPosted)
			m.Inbound("support", metrics.InboundPosted)
			m.Inbound("support", metrics.InboundRetried)
			m.Inbound("billing", metrics.InboundQuarantined)
			m.Inbound("support", "exploded")
		},
		want: map[string]float64{
			`mailgate_inbound_messages_total{channel="support",outcome="posted"}`:      2,
			`mailgate_inbound_messages_total{channel="support",outcome="retried"}`:     1,
			`mailgate_inbound_messages_total{channel="billing",outcome="quarantined"}`: 1,
			`mailgate_inbound_messages_total{channel="support",outcome="other"}`:       1,
		},
	}, {
		name: "skip reasons bounded",
		do: func(m *metrics.Metrics) {
			m.SkipReason("support", "auto_reply")
			m.SkipReason("support", "auto_reply")
			m.SkipReason("support", "bounce")
			m.SkipReason("support", "Subject: Re: your order 4711")
			m.SkipReason("support", "")
			m.SkipReason("support", strings.Repeat("x", 33))
		},
		want: map[string]float64{
			`mailgate_inbound_skipped_total{channel="support",reason="auto_reply"}`: 2,
			`mailgate_inbound_skipped_total{channel="support",reason="bounce"}`:     1,
			`mailgate_inbound_skipped_total{channel="support",reason="other"}`:      3,
		},
	}, {
		name: "outbound outcomes",
		do: func(m *metrics.Metrics) {
			m.Outbound("support", metrics.OutboundSent)
			m.Outbound("support", metrics.OutboundFailed)
			m.Outbound("support", metrics.OutboundFailed)
			m.Outbound("support", "posted") // an inbound outcome is not an outbound one
		},
		want: map[string]float64{
			`mailgate_outbound_messages_total{channel="support",outcome="sent"}`:   1,
			`mailgate_outbound_messages_total{channel="support",outcome="failed"}`: 2,
			`mailgate_outbound_messages_total{channel="support",outcome="other"}`:  1,
		},
	}, {
		name: "charset fallbacks ignore non-positive",
		do: func(m *metrics.Metrics) {
			m.CharsetFallbacks("support", 3)
			m.CharsetFallbacks("support", 0)
			m.CharsetFallbacks("support", -5)
			m.CharsetFallbacks("support", 1)
		},
		want: map[string]float64{
			`mailgate_charset_fallbacks_total{channel="support"}`: 4,
		},
	}, {
		name: "inbound latency buckets",
		do: func(m *metrics.Metrics) {
			m.InboundLatency("support", 20*time.Millisecond)
			m.InboundLatency("support", -time.Second) // clock skew: counted as 0
			m.InboundLatency("support", 2*time.Hour)  // above the last bucket
		},
		want: map[string]float64{
			`mailgate_inbound_delivery_seconds_bucket{channel="support",le="0.01"}`:  1,
			`mailgate_inbound_delivery_seconds_bucket{channel="support",le="0.025"}`: 2,
			`mailgate_inbound_delivery_seconds_bucket{channel="support",le="3600"}`:  2,
			`mailgate_inbound_delivery_seconds_bucket{channel="support",le="+Inf"}`:  3,
			`mailgate_inbound_delivery_seconds_count{channel="support"}`:             3,
			`mailgate_inbound_delivery_seconds_sum{channel="support"}`:               7200.02,
		},
	}, {
		name: "outbound latency",
		do: func(m *metrics.Metrics) {
			m.OutboundLatency("support", 90*time.Second)
		},
		want: map[string]float64{
			`mailgate_outbound_delivery_seconds_bucket{channel="support",le="60"}`:  0,
			`mailgate_outbound_delivery_seconds_bucket{channel="support",le="120"}`: 1,
			`mailgate_outbound_delivery_seconds_sum{channel="support"}`:             90,
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := metrics.New()
			srv := serve(t, m)
			before := scrape(t, srv)
			for k := range tt.want {
				if _, ok := before[k]; ok {
					t.Errorf("series %s present before any event", k)
				}
			}
			tt.do(m)
			wantSamples(t, scrape(t, srv), tt.want)
		})
	}
}

// TestCountersAccumulate checks that a scrape sees later increments, i.e.
// the lines change as the counters do.
func TestCountersAccumulate(t *testing.T) {
	m := metrics.New()
	srv := serve(t, m)
	m.InitChannel("support")
	const key = `mailgate_inbound_messages_total{channel="support",outcome="dead"}`
	for want := 0; want <= 3; want++ {
		got := scrape(t, srv)
		if got[key] != float64(want) {
			t.Fatalf("after %d dead letters: %s = %v", want, key, got[key])
		}
		m.Inbound("support", metrics.InboundDead)
	}
}

func TestStandardCollectors(t *testing.T) {
	got := scrape(t, serve(t, metrics.New()))
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if _, ok := got[name]; !ok {
			t.Errorf("%s missing from scrape", name)
		}
	}
}

// TestPrivateRegistry checks that two Metrics share nothing: there is no
// global registry to collide in.
func TestPrivateRegistry(t *testing.T) {
	a, b := metrics.New(), metrics.New()
	a.Inbound("support", metrics.InboundPosted)
	const key = `mailgate_inbound_messages_total{channel="support",outcome="posted"}`
	if v, ok := scrape(t, serve(t, a))[key]; !ok || v != 1 {
		t.Errorf("first Metrics: %s = %v, %v; want 1", key, v, ok)
	}
	if v, ok := scrape(t, serve(t, b))[key]; ok {
		t.Errorf("second Metrics sees the first one's counter: %s = %v", key, v)
	}
}

func TestInvalidUTF8Channel(t *testing.T) {
	m := metrics.New()
	bad := "sup\xffport"
	m.Inbound(bad, metrics.InboundPosted)
	m.InitChannel(bad)
	m.SetStateFunc(func() []metrics.ChannelState { return []metrics.ChannelState{{Channel: bad}} })
	got := scrape(t, serve(t, m))
	if v := got[`mailgate_inbound_messages_total{channel="sup`+"\uFFFD"+`port",outcome="posted"}`]; v != 1 {
		t.Errorf("counter of channel with invalid UTF-8 = %v, want 1 (scrape: %d series)", v, len(got))
	}
	if _, ok := got[`mailgate_imap_connected{channel="sup`+"\uFFFD"+`port"}`]; !ok {
		t.Errorf("state of channel with invalid UTF-8 missing")
	}
}

func TestStateGauges(t *testing.T) {
	m := metrics.New()
	srv := serve(t, m)

	if _, ok := scrape(t, srv)[`mailgate_imap_connected{channel="support"}`]; ok {
		t.Fatal("state gauges exported before SetStateFunc")
	}

	var mu sync.Mutex
	states := []metrics.ChannelState{{
		Channel:          "support",
		IMAPConnected:    true,
		LastSync:         time.Unix(1_700_000_000, 500_000_000),
		InboundQueue:     3,
		OutboxQueue:      7,
		DeadLetters:      1,
		OldestPendingAge: 90 * time.Second,
	}, {
		Channel: "billing", // never synced, all zero
	}}
	calls := 0
	m.SetStateFunc(func() []metrics.ChannelState {
		mu.Lock()
		defer mu.Unlock()
		calls++
		return append([]metrics.ChannelState(nil), states...)
	})

	wantSamples(t, scrape(t, srv), map[string]float64{
		`mailgate_imap_connected{channel="support"}`:              1,
		`mailgate_last_sync_timestamp_seconds{channel="support"}`: 1_700_000_000.5,
		`mailgate_queue_depth{channel="support",queue="inbound"}`: 3,
		`mailgate_queue_depth{channel="support",queue="outbox"}`:  7,
		`mailgate_dead_letters{channel="support"}`:                1,
		`mailgate_oldest_pending_seconds{channel="support"}`:      90,
		`mailgate_imap_connected{channel="billing"}`:              0,
		`mailgate_last_sync_timestamp_seconds{channel="billing"}`: 0,
		`mailgate_queue_depth{channel="billing",queue="inbound"}`: 0,
		`mailgate_queue_depth{channel="billing",queue="outbox"}`:  0,
		`mailgate_dead_letters{channel="billing"}`:                0,
		`mailgate_oldest_pending_seconds{channel="billing"}`:      0,
		`promhttp_metric_handler_errors_total{cause="gathering"}`: 0,
		`promhttp_metric_handler_errors_total{cause="encoding"}`:  0,
	})

	// The state changes between scrapes; a duplicate entry is dropped
	// rather than failing the scrape.
	mu.Lock()
	states[0].IMAPConnected = false
	states[0].InboundQueue = 0
	states[0].OldestPendingAge = -time.Second
	states = append(states, metrics.ChannelState{Channel: "support", IMAPConnected: true, InboundQueue: 99})
	mu.Unlock()
	got := scrape(t, srv)
	wantSamples(t, got, map[string]float64{
		`mailgate_imap_connected{channel="support"}`:              0,
		`mailgate_queue_depth{channel="support",queue="inbound"}`: 0,
		`mailgate_oldest_pending_seconds{channel="support"}`:      0,
		`promhttp_metric_handler_errors_total{cause="gathering"}`: 0,
	})

	mu.Lock()
	if calls != 2 {
		t.Errorf("state function called %d times for 2 scrapes, want 2", calls)
	}
	mu.Unlock()

	m.SetStateFunc(nil)
	if _, ok := scrape(t, srv)[`mailgate_imap_connected{channel="support"}`]; ok {
		t.Error("state gauges still exported after SetStateFunc(nil)")
	}
}

// TestConcurrent exercises every method from many goroutines while
// scraping; run with -race.
func TestConcurrent(t *testing.T) {
	m := metrics.New()
	srv := serve(t, m)
	const workers, each = 8, 200
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < each; i++ {
				m.Inbound("support", metrics.InboundPosted)
				m.SkipReason("support", "auto_reply")
				m.Outbound("support", metrics.OutboundSent)
				m.InboundLatency("support", time.Duration(i)*time.Millisecond)
				m.OutboundLatency("support", time.Second)
				m.CharsetFallbacks("support", 1)
				if i%50 == 0 {
					n := i
					m.SetStateFunc(func() []metrics.ChannelState {
						return []metrics.ChannelState{{Channel: "support", InboundQueue: n}}
					})
					m.InitChannel("billing")
				}
			}
		}()
	}
	for s := 0; s < 2; s++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 5; i++ {
				scrape(t, srv)
			}
		}()
	}
	wg.Wait()
	const n = workers * each
	wantSamples(t, scrape(t, srv), map[string]float64{
		`mailgate_inbound_messages_total{channel="support",outcome="posted"}`:   n,
		`mailgate_inbound_skipped_total{channel="support",reason="auto_reply"}`: n,
		`mailgate_outbound_messages_total{channel="support",outcome="sent"}`:    n,
		`mailgate_inbound_delivery_seconds_count{channel="support"}`:            n,
		`mailgate_outbound_delivery_seconds_sum{channel="support"}`:             n,
		`mailgate_charset_fallbacks_total{channel="support"}`:                   n,
	})
}

func BenchmarkInbound(b *testing.B) {
	m := metrics.New()
	b.ReportAllocs()
	for b.Loop() {
		m.Inbound("support", metrics.InboundPosted)
	}
}

func BenchmarkInboundParallel(b *testing.B) {
	m := metrics.New()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			m.Inbound("support", metrics.InboundPosted)
		}
	})
}

func TestLeaseMetrics(t *testing.T) {
	m := metrics.New()
	srv := serve(t, m)
	m.SetStateFunc(func() []metrics.ChannelState {
		return []metrics.ChannelState{
			{Channel: "support", Leased: true, LeaseHeld: true},
			{Channel: "billing", Leased: true},
			{Channel: "solo"}, // no leases: no lease gauge
		}
	})
	m.LeaseTakeover("support")
	m.LeaseTakeover("support")
	got := scrape(t, srv)
	wantSamples(t, got, map[string]float64{
		`mailgate_channel_lease_held{channel="support"}`:    1,
		`mailgate_channel_lease_held{channel="billing"}`:    0,
		`mailgate_lease_takeovers_total{channel="support"}`: 2,
	})
	if _, ok := got[`mailgate_channel_lease_held{channel="solo"}`]; ok {
		t.Error("lease gauge exported for a channel without leases")
	}
}
