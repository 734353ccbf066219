package main

import (
	"mailgate/metrics"
	"mailgate/outbound"
)

// outboundChannel is the outbox worker's channel lookup.
func (d *daemon) outboundChannel(name string) (outbound.Channel, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	run, ok := d.channels[name]
	if !ok {
		return outbound.Channel{}, false
	}
	return run.out, true
}

// webhookChannel is the webhook's channel lookup. It reads the
// configuration, not the running channels: a reply for a channel that is
// restarting after a reload is queued all the same.
func (d *daemon) webhookChannel(name string) (outbound.WebhookChannel, bool) {
	d.mu.Lock()
	cfg := d.opts.Config
	d.mu.Unlock()
	ch, ok := cfg.Channel(name)
	if !ok {
		return outbound.WebhookChannel{}, false
	}
	coalesce := ch.SMTP.Coalesce.Duration
	if coalesce == 0 {
		coalesce = -1 // configured 0: send each message at once
	}
	return outbound.WebhookChannel{
		Name:          name,
		OutboundToken: ch.Userlike.OutboundToken.Reveal(),
		Debug:         ch.Userlike.Debug,
		Coalesce:      coalesce,
	}, true
}

// observeOutbound turns outbox outcomes into metrics.
func (d *daemon) observeOutbound(o outbound.Outcome) {
	switch o.Kind {
	case "sent":
		d.metrics.Outbound(o.Channel, metrics.OutboundSent)
		d.metrics.OutboundLatency(o.Channel, o.Latency)
	case "retried":
		d.metrics.Outbound(o.Channel, metrics.OutboundRetried)
	case "failed", "bounced":
		d.metrics.Outbound(o.Channel, metrics.OutboundFailed)
	}
}
