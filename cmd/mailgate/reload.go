package main

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"

	"mailgate/bridge"
	"mailgate/config"
)

// reload applies a new configuration: channels that were added, removed or
// changed are started, stopped or restarted; the others are untouched,
// unless the channels' own addresses changed, which restarts them all.
// Changes outside [[channel]] ([server], [store], [media], [log],
// [metrics]) need a restart and are reported as such.
func (d *daemon) reload(ctx context.Context, next *config.Config) error {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	prev := d.opts.Config
	var restartNeeded []string
	for _, s := range []struct {
		name string
		a, b any
	}{
		{"server", prev.Server, next.Server},
		{"metrics", prev.Metrics, next.Metrics},
		{"store", prev.Store, next.Store},
		{"media", prev.Media, next.Media},
		{"log", prev.Log, next.Log},
	} {
		if !reflect.DeepEqual(s.a, s.b) {
			restartNeeded = append(restartNeeded, "["+s.name+"]")
		}
	}
	if len(restartNeeded) > 0 {
		d.log.Warn("config: changes to " + strings.Join(restartNeeded, ", ") + " take effect only after a restart; they are ignored until then")
	}

	wanted := map[string]config.Channel{}
	for _, ch := range next.Channels {
		wanted[ch.Name] = ch
	}
	// Every channel's analyzer and outbox keep the own addresses of all
	// channels (never copied on a reply); when they change, every channel
	// restarts, not only the one whose address changed.
	ownChanged := !slices.Equal(bridge.OwnAddresses(prev), bridge.OwnAddresses(next))
	d.mu.Lock()
	var stop []*channelRun
	var start []config.Channel
	for name, run := range d.channels {
		ch, ok := wanted[name]
		if !ok || ownChanged || !run.cfg.Equal(ch) {
			stop = append(stop, run)
			delete(d.channels, name)
		}
	}
	for _, ch := range next.Channels {
		if _, running := d.channels[ch.Name]; !running {
			start = append(start, ch)
		}
	}
	d.mu.Unlock()

	for _, run := range stop {
		run.cancel()
	}
	for _, run := range stop {
		// Wait for it whatever it takes: its poster's drain is bounded
		// (30 s), and starting the new one first would run two.
		<-run.done
		d.log.Info("channel stopped for reload", "channel", run.cfg.Name)
	}
	// Keep the globals that need a restart; take the new channels.
	merged := *prev
	merged.Channels = next.Channels
	merged.Warnings = next.Warnings
	d.mu.Lock()
	d.opts.Config = &merged
	d.mu.Unlock()
	var errs []error
	for _, ch := range start {
		if err := d.startChannel(ctx, ch); err != nil {
			errs = append(errs, fmt.Errorf("reload: %w", err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	d.log.Info("config reloaded", "stopped", len(stop), "started", len(start), "channels", len(next.Channels))
	return nil
}
