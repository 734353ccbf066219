package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"mailgate/inbound"
	"mailgate/metrics"
	"mailgate/oauthgrant"
	"mailgate/store"
)

// startMetrics serves /metrics, /healthz and /readyz on [metrics] listen
// (nothing when it is empty).
func (d *daemon) startMetrics() error {
	d.metrics.SetStateFunc(d.channelStates)
	if err := d.metrics.Registry().Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mailgate_store_wal_fsyncs_total",
		Help: "fsyncs of the store's write-ahead log; concurrent commits share one (group commit).",
	}, func() float64 { return float64(d.db.WALSyncs()) })); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	if err := d.metrics.Registry().Register(prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "mailgate_store_tx_retries_total",
		Help: "PostgreSQL store transactions run again after losing a race with another (serialization failure, deadlock); 0 on SQLite.",
	}, func() float64 { return float64(d.db.TxRetries()) })); err != nil {
		return fmt.Errorf("metrics: %w", err)
	}
	addr := d.opts.Config.Metrics.Listen
	if addr == "" {
		return nil
	}
	ln, err := d.opts.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen on %s: %w", addr, err)
	}
	d.metricsSrv = &http.Server{Handler: d.metrics.Handler(d.ready), ReadHeaderTimeout: 10 * time.Second}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		if err := d.metricsSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			d.log.Error("metrics: listener failed", "err", err)
		}
	}()
	return nil
}

// observer turns inbound outcomes of a channel into metrics.
func (d *daemon) observer(channel string) func(inbound.Outcome) {
	return func(o inbound.Outcome) {
		switch o.Kind {
		case "posted":
			d.metrics.Inbound(channel, metrics.InboundPosted)
			d.metrics.InboundLatency(channel, o.Latency)
		case "skipped":
			d.metrics.Inbound(channel, metrics.InboundSkipped)
			d.metrics.SkipReason(channel, skipReasonLabel(o.Reason))
		case "quarantined":
			d.metrics.Inbound(channel, metrics.InboundQuarantined)
		case "dead":
			d.metrics.Inbound(channel, metrics.InboundDead)
		case "retried":
			d.metrics.Inbound(channel, metrics.InboundRetried)
		case "charset-fallback":
			d.metrics.CharsetFallbacks(channel, o.CharsetFallbacks)
		case "history":
			d.metrics.History(channel, o.Count)
		case "action-refused":
			d.metrics.ActionsRefused(channel, o.Count)
		}
	}
}

// skipReasonLabel maps a skip reason to a short metric label.
func skipReasonLabel(reason string) string {
	switch reason {
	case "auto-reply":
		return "auto_reply"
	case "rate-limit":
		return "rate_limit"
	case "bounce", "list", "own", "duplicate":
		return reason
	}
	return "other"
}

// channelStates reads the gauges of every channel for a scrape.
func (d *daemon) channelStates() []metrics.ChannelState {
	d.mu.Lock()
	runs := make([]*channelRun, 0, len(d.channels))
	for _, r := range d.channels {
		runs = append(runs, r)
	}
	d.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out []metrics.ChannelState
	for _, r := range runs {
		ws := r.watcher.State()
		cs := metrics.ChannelState{Channel: r.cfg.Name, IMAPConnected: ws.Connected, LastSync: ws.LastSync}
		if r.grant != nil {
			cs.OAuth2, cs.OAuthLoginNeeded = true, r.grant.LoginNeeded() != nil
		}
		if d.leases != nil {
			_, held := d.leases.Held(r.cfg.Name)
			cs.Leased, cs.LeaseHeld = true, held
		}
		if st, err := d.db.Status(ctx, r.cfg.Name); err == nil {
			cs.InboundQueue = st.Inbound[store.StateFetched] + st.Inbound[store.StatePosting]
			cs.OutboxQueue = st.Outbox[store.OutboxQueued] + st.Outbox[store.OutboxSending]
			cs.DeadLetters = st.Inbound[store.StateDead]
			if !st.OldestPending.IsZero() {
				cs.OldestPendingAge = time.Since(st.OldestPending)
			}
		}
		out = append(out, cs)
	}
	return out
}

// ready is /readyz: the store answers and every channel is connected to
// IMAP or waiting out a reconnect backoff (not refused by the server).
// With leases, the lease table answers too, and only the channels whose
// mailbox side runs here are checked: a channel held by another instance
// is fine.
func (d *daemon) ready(ctx context.Context) error {
	if _, err := d.db.SchemaVersion(ctx); err != nil {
		return fmt.Errorf("store: %v", err)
	}
	if d.leases != nil {
		if _, err := d.leases.Holders(ctx); err != nil {
			return err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	for name, r := range d.channels {
		if _, running := r.mailboxRunning(); !running && d.leases != nil {
			continue
		}
		ws := r.watcher.State()
		var needed *oauthgrant.LoginNeededError
		if r.grant != nil {
			needed = r.grant.LoginNeeded()
		}
		switch {
		case needed != nil:
			errs = append(errs, fmt.Errorf("channel %q: OAuth2 login needed (%s); run: %s", name, needed.Reason, needed.Command))
		case ws.AuthFailed:
			errs = append(errs, fmt.Errorf("channel %q: IMAP login refused", name))
		case !ws.Connected && ws.Backoff == 0:
			errs = append(errs, fmt.Errorf("channel %q: IMAP not connected", name))
		}
	}
	return errors.Join(errs...)
}
