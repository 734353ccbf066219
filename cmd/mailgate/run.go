package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"mailgate/config"
)

// stopTimeout bounds the shutdown after SIGTERM: in-flight POSTs and SMTP
// sends get this long to finish before the process exits anyway.
const stopTimeout = 30 * time.Second

func cmdRun(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "run", "[-c FILE]", "run the daemon")
	path := configFlag(env, fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Errorf("mailgate run: unexpected argument %q", fs.Arg(0))}
	}
	cfg, err := loadConfig(env, *path)
	if err != nil {
		return err
	}
	if err := placeholderError(cfg); err != nil {
		return err
	}
	log, err := newLogger(env.stderr, cfg.Log.Level, cfg.Log.Format)
	if err != nil {
		return usageError{fmt.Errorf("%s: %w", *path, err)}
	}
	for _, w := range cfg.Warnings {
		log.Warn("config: " + w)
	}

	ctx, stop := signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	notify := notifier{log: log}
	notify.status("starting")
	sockets, err := systemdSockets()
	if err != nil {
		return err
	}
	d, err := startDaemon(ctx, daemonOptions{Config: cfg, ConfigPath: *path, Logger: log, Getenv: env.getenv, Listen: sockets.listen})
	if err != nil {
		sockets.unused()
		return err
	}
	if err := sockets.unused(); err != nil {
		// Closed, so that a client is refused rather than left waiting.
		log.Error(err.Error() + "; closed them")
	}
	if a := sockets.addrs(); len(a) > 0 {
		log.Info("listening on sockets passed by systemd", "addresses", strings.Join(a, ", "))
	}
	d.waitAttempted(ctx)
	log.Info("mailgate started", "version", versionString(), "channels", len(cfg.Channels), "listen", d.httpAddr())
	notify.ready(d.statusLine())
	go notify.watchdog(ctx, d.alive)

	status := time.NewTicker(30 * time.Second)
	defer status.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-status.C:
			notify.status(d.statusLine())
		case <-hup:
			notify.reloading()
			next, err := config.Load(*path, config.Options{Getenv: env.getenv})
			if err == nil {
				err = placeholderError(next)
			}
			if err != nil {
				log.Error("config: reload refused, the running configuration stays: " + strings.ReplaceAll(err.Error(), "\n", "; "))
			} else {
				for _, w := range next.Warnings {
					log.Warn("config: " + w)
				}
				if err := d.reload(ctx, next); err != nil {
					log.Error("config: reload failed", "err", err)
				}
			}
			notify.ready(d.statusLine())
		}
	}
	log.Info("mailgate stopping")
	notify.stopping()
	done := make(chan error, 1)
	go func() { done <- d.wait() }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		log.Info("mailgate stopped")
		return nil
	case <-time.After(stopTimeout + 5*time.Second):
		return fmt.Errorf("shutdown did not finish within %s", stopTimeout)
	}
}
