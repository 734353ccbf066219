package main

import (
	"context"
	"fmt"

	"mailgate/config"
)

func cmdCheckConfig(ctx context.Context, env *environment, args []string) error {
	fs := newFlagSet(env, "check-config", "[-c FILE]", "load and validate the configuration, print one line per channel")
	path := configFlag(env, fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(env, *path)
	if err != nil {
		return err
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintf(env.stderr, "warning: %s\n", w)
	}
	for _, line := range cfg.Summary() {
		fmt.Fprintln(env.stdout, line)
	}
	return nil
}

// loadConfig loads the configuration file; its errors are usage errors
// (exit status 2) that name the file, the line and the key.
func loadConfig(env *environment, path string) (*config.Config, error) {
	cfg, err := config.Load(path, config.Options{Getenv: env.getenv})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}
