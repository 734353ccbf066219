package main

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"time"

	"mailgate/config"
)

// reload applies a new configuration: channels that were added, removed or
// changed are started, stopped or restarted; the others are untouched.
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
	d.mu.Lock()
	var stop []*channelRun
	var start []config.Channel
	for name, run := range d.channels {
		ch, ok := wanted[name]
		if !ok || !run.cfg.Equal(ch) {
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
		select {
		case <-run.done:
		case <-time.After(stopTimeout):
			return fmt.Errorf("reload: channel %q did not stop within %s", run.cfg.Name, stopTimeout)
		}
		d.log.Info("channel stopped for reload", "channel", run.cfg.Name)
	}
	// Keep the globals that need a restart; take the new channels.
	merged := *prev
	merged.Channels = next.Channels
	merged.Warnings = next.Warnings
	d.opts.Config = &merged
	for _, ch := range start {
		if err := d.startChannel(ctx, ch); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	d.log.Info("config reloaded", "stopped", len(stop), "started", len(start), "channels", len(next.Channels))
	return nil
}
