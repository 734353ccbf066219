package metrics

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// ChannelState is the state of one channel at the time of a scrape, as the
// daemon reports it through the function given to SetStateFunc.
type ChannelState struct {
	// Channel is the channel name from the configuration.
	Channel string
	// IMAPConnected reports whether the IMAP session of the channel is
	// currently logged in (mailgate_imap_connected 1 or 0).
	IMAPConnected bool
	// LastSync is when the mailbox was last fully synchronised; the zero
	// time (never) is exported as 0, so that an alert on
	// time() - mailgate_last_sync_timestamp_seconds fires for it.
	LastSync time.Time
	// InboundQueue is the number of inbound emails fetched but not yet
	// posted, skipped, quarantined or dead-lettered.
	InboundQueue int
	// OutboxQueue is the number of replies queued or being sent.
	OutboxQueue int
	// DeadLetters is the number of inbound emails and replies given up on
	// and waiting for an operator.
	DeadLetters int
	// OldestPendingAge is the age of the oldest item in either queue, zero
	// when both are empty.
	OldestPendingAge time.Duration
	// OAuth2 reports whether the channel logs in with OAuth2; only such
	// channels export mailgate_oauth_login_needed.
	OAuth2 bool
	// OAuthLoginNeeded reports whether the channel's OAuth2 grant was
	// refused and waits for `mailgate oauth login`.
	OAuthLoginNeeded bool
	// Leased reports whether the daemon runs with channel leases; only
	// then is mailgate_channel_lease_held exported.
	Leased bool
	// LeaseHeld reports whether this instance holds the channel's lease
	// and does its mailbox work.
	LeaseHeld bool
}

// stateCollector is a prometheus.Collector exporting the gauges of
// ChannelState, read from a function on each Collect.
type stateCollector struct {
	f atomic.Pointer[func() []ChannelState]

	imapConnected *prometheus.Desc
	lastSync      *prometheus.Desc
	queueDepth    *prometheus.Desc
	deadLetters   *prometheus.Desc
	oldestPending *prometheus.Desc
	loginNeeded   *prometheus.Desc
	leaseHeld     *prometheus.Desc
}

// newStateCollector returns a collector with no state function: it exports
// nothing until one is set.
func newStateCollector() *stateCollector {
	ch := []string{"channel"}
	return &stateCollector{
		imapConnected: prometheus.NewDesc("mailgate_imap_connected",
			"Whether the channel's IMAP session is logged in (1) or not (0).", ch, nil),
		lastSync: prometheus.NewDesc("mailgate_last_sync_timestamp_seconds",
			"Unix time of the channel's last complete mailbox synchronisation; 0 means never.", ch, nil),
		queueDepth: prometheus.NewDesc("mailgate_queue_depth",
			"Items waiting in the channel's inbound queue or outbox.", []string{"channel", "queue"}, nil),
		deadLetters: prometheus.NewDesc("mailgate_dead_letters",
			"Inbound emails and replies of the channel given up on, waiting for an operator.", ch, nil),
		oldestPending: prometheus.NewDesc("mailgate_oldest_pending_seconds",
			"Age of the oldest item waiting in the channel's queues; 0 when they are empty.", ch, nil),
		loginNeeded: prometheus.NewDesc("mailgate_oauth_login_needed",
			"Whether the channel's OAuth2 grant was refused and waits for `mailgate oauth login` (1) or works (0); only channels with [channel.oauth2].", ch, nil),
		leaseHeld: prometheus.NewDesc("mailgate_channel_lease_held",
			"Whether this instance holds the channel's lease and does its mailbox work (1) or another instance may (0); only with [store] dsn.", ch, nil),
	}
}

// set installs f; nil removes it.
func (c *stateCollector) set(f func() []ChannelState) {
	if f == nil {
		c.f.Store(nil)
		return
	}
	c.f.Store(&f)
}

// Describe implements prometheus.Collector.
func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.imapConnected
	ch <- c.lastSync
	ch <- c.queueDepth
	ch <- c.deadLetters
	ch <- c.oldestPending
	ch <- c.loginNeeded
	ch <- c.leaseHeld
}

// Collect implements prometheus.Collector. A channel listed twice by the
// state function is exported once, from its first entry: a duplicate
// series would fail the whole scrape.
func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	fp := c.f.Load()
	if fp == nil {
		return
	}
	states := (*fp)()
	seen := make(map[string]bool, len(states))
	for _, s := range states {
		name := channelLabel(s.Channel)
		if seen[name] {
			continue
		}
		seen[name] = true
		connected := 0.0
		if s.IMAPConnected {
			connected = 1
		}
		lastSync := 0.0
		if !s.LastSync.IsZero() {
			lastSync = float64(s.LastSync.UnixNano()) / 1e9
		}
		ch <- gauge(c.imapConnected, connected, name)
		ch <- gauge(c.lastSync, lastSync, name)
		ch <- gauge(c.queueDepth, float64(s.InboundQueue), name, "inbound")
		ch <- gauge(c.queueDepth, float64(s.OutboxQueue), name, "outbox")
		ch <- gauge(c.deadLetters, float64(s.DeadLetters), name)
		ch <- gauge(c.oldestPending, seconds(s.OldestPendingAge), name)
		if s.OAuth2 {
			needed := 0.0
			if s.OAuthLoginNeeded {
				needed = 1
			}
			ch <- gauge(c.loginNeeded, needed, name)
		}
		if s.Leased {
			held := 0.0
			if s.LeaseHeld {
				held = 1
			}
			ch <- gauge(c.leaseHeld, held, name)
		}
	}
}

// gauge returns a constant gauge sample, or an invalid metric (reported as
// a scrape error instead of a panic) when a label value is not valid UTF-8.
func gauge(desc *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	m, err := prometheus.NewConstMetric(desc, prometheus.GaugeValue, v, labels...)
	if err != nil {
		return prometheus.NewInvalidMetric(desc, err)
	}
	return m
}
