package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks the systemd notify protocol ($NOTIFY_SOCKET). Without a
// socket every call is a no-op.
type notifier struct {
	log *slog.Logger
}

func (n notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.Warn("systemd: notify failed", "state", state, "err", err)
	}
}

// ready sends READY=1 with a status line.
func (n notifier) ready(status string) { n.send(sd.SdNotifyReady + "\nSTATUS=" + status) }

// status sends a STATUS= line.
func (n notifier) status(status string) { n.send("STATUS=" + status) }

// stopping sends STOPPING=1.
func (n notifier) stopping() { n.send(sd.SdNotifyStopping + "\nSTATUS=stopping") }

// reloading sends RELOADING=1; ready must follow.
func (n notifier) reloading() { n.send(sd.SdNotifyReloading) }

// watchdog pings the systemd watchdog at half its interval, but only while
// alive reports the main loops healthy: a wedged daemon is restarted by
// systemd instead of being kept alive by a bare timer.
func (n notifier) watchdog(ctx context.Context, alive func(ctx context.Context) error) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, interval/4)
		err := alive(cctx)
		cancel()
		if err != nil {
			n.log.Error("systemd: liveness check failed; not pinging the watchdog", "err", err)
			continue
		}
		n.send(sd.SdNotifyWatchdog)
	}
}

// alive is the liveness check behind the watchdog: the store answers, and
// every channel's poster loop went round recently.
func (d *daemon) alive(ctx context.Context) error {
	if _, err := d.db.SchemaVersion(ctx); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	var errs []error
	// One Flush may wait on slow SMTP relays (60 s a step), so the outbox
	// worker gets more slack than the posters.
	if age := time.Since(d.outbound.Heartbeat()); age > 10*time.Minute {
		errs = append(errs, fmt.Errorf("outbox worker stalled for %s", age.Round(time.Second)))
	}
	for name, run := range d.channels {
		// With leases, a channel held elsewhere has no poster here;
		// one just acquired has had no time to beat yet.
		since, running := run.mailboxRunning()
		if !running && d.leases != nil {
			continue
		}
		beat := run.inbound.Heartbeat()
		if since.After(beat) {
			beat = since
		}
		if age := time.Since(beat); age > 3*time.Minute {
			errs = append(errs, fmt.Errorf("channel %q: poster loop stalled for %s", name, age.Round(time.Second)))
		}
	}
	return errors.Join(errs...)
}

// waitAttempted waits until every channel has made its first IMAP
// connection attempt (successful or not), or ctx ends.
func (d *daemon) waitAttempted(ctx context.Context) {
	for {
		d.mu.Lock()
		all := true
		for _, run := range d.channels {
			if _, running := run.mailboxRunning(); !running && d.leases != nil {
				continue // held by another instance, or not yet acquired
			}
			if !run.watcher.State().Attempted {
				all = false
			}
		}
		d.mu.Unlock()
		if all {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// statusLine summarises the daemon for STATUS=.
func (d *daemon) statusLine() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	connected, held := 0, 0
	for _, run := range d.channels {
		if _, running := run.mailboxRunning(); running {
			held++
		}
		if run.watcher.State().Connected {
			connected++
		}
	}
	if d.leases != nil {
		return fmt.Sprintf("%d/%d channels held here, %d connected to IMAP", held, len(d.channels), connected)
	}
	return fmt.Sprintf("%d/%d channels connected to IMAP", connected, len(d.channels))
}
