package main

import (
	"context"

	"mailgate/config"
	"mailgate/store"
)

// openDB opens the store the configuration names: the SQLite file at
// store.path, or the PostgreSQL database at store.dsn.
func openDB(ctx context.Context, cfg *config.Config) (*store.DB, error) {
	if cfg.Store.Driver == config.StorePostgres {
		return store.OpenPostgres(ctx, cfg.Store.DSN.Reveal(), store.Options{})
	}
	return store.Open(ctx, cfg.Store.Path, store.Options{})
}
