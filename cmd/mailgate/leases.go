package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"mailgate/config"
	"mailgate/lease"
	"mailgate/metrics"
)

// openLeases connects to the lease table when the store is PostgreSQL
// ([store] driver = "postgres"): then each channel's mailbox side runs
// only while this instance holds the channel's lease (doc/scale-out.md).
func (d *daemon) openLeases(ctx context.Context) error {
	cfg := d.opts.Config.Store
	if cfg.Driver != config.StorePostgres {
		return nil
	}
	dsn := cfg.DSN.Reveal()
	instance := cfg.Instance
	if instance == "" {
		instance = defaultInstance()
	}
	octx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	t, err := lease.Open(octx, lease.Options{
		DSN:      dsn,
		Instance: instance,
		TTL:      cfg.LeaseTTL.Duration,
		Events:   d.leaseEvent,
		Logger:   d.log,
	})
	if err != nil {
		return err
	}
	d.leases = t
	d.metrics.SetLeaseFunc(instance, d.leaseStates)
	d.log.Info("lease: channels run where their lease is held", "instance", instance, "lease_ttl", t.TTL())
	return nil
}

// drainTimeout is how long a channel's poster lets its POSTs in flight
// finish once the channel stops. Under a lease it is a tenth of the ttl,
// half the lease's safety margin: a fenced-out instance must stop
// writing the ledger before another can take the lease. Otherwise it is
// the poster's default.
func (d *daemon) drainTimeout() time.Duration {
	if d.leases == nil {
		return 0
	}
	return d.leases.TTL() / 10
}

// defaultInstance is hostname-pid: unique among instances on different
// hosts and among processes on one.
func defaultInstance() string {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "mailgate"
	}
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// leaseEvent turns lease changes into metrics.
func (d *daemon) leaseEvent(e lease.Event) {
	if d.opts.LeaseEvents != nil {
		d.opts.LeaseEvents(e)
	}
	if e.Kind == lease.Acquired && e.Takeover {
		d.metrics.LeaseTakeover(e.Channel)
	}
}

// leaseStates lists the configured channels' leases for /readyz. A lease
// table that cannot be read shows the channels with what this instance
// knows: whether it holds them.
func (d *daemon) leaseStates(ctx context.Context) []metrics.LeaseState {
	d.mu.Lock()
	cfg := d.opts.Config
	d.mu.Unlock()
	byChannel := map[string]lease.Holder{}
	if hs, err := d.leases.Holders(ctx); err == nil {
		for _, h := range hs {
			if h.Live {
				byChannel[h.Channel] = h
			}
		}
	}
	out := make([]metrics.LeaseState, 0, len(cfg.Channels))
	for _, ch := range cfg.Channels {
		st := metrics.LeaseState{Channel: ch.Name}
		if h, ok := byChannel[ch.Name]; ok {
			st.Holder, st.Token = h.Instance, h.Token
		}
		if token, ok := d.leases.Held(ch.Name); ok {
			st.Holder, st.Token, st.Here = d.leases.Instance(), token, true
		}
		out = append(out, st)
	}
	return out
}
