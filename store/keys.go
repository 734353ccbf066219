package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
)

// InstallationKey returns the secret called name, creating it from
// crypto/rand with size bytes on first use. Creation is atomic: concurrent
// callers (and processes) all get the same key. Asking for an existing key
// with a different size is an error. The key never appears in errors.
func (db *DB) InstallationKey(ctx context.Context, name string, size int) ([]byte, error) {
	if name == "" || size <= 0 {
		return nil, fmt.Errorf("store: installation key %q: need a name and a positive size", name)
	}
	var key []byte
	err := db.tx(ctx, func(tx *sql.Tx) error {
		err := tx.QueryRowContext(ctx, `SELECT value FROM installation_keys WHERE name = ?`, name).Scan(&key)
		if err == nil {
			return nil
		}
		if !errors.Is(err, sql.ErrNoRows) {
			return err
		}
		key = make([]byte, size)
		if _, err := rand.Read(key); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `INSERT INTO installation_keys (name, value, created_at) VALUES (?, ?, ?)`,
			name, key, db.nowMS())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: installation key %q: %w", name, err)
	}
	if len(key) != size {
		return nil, fmt.Errorf("store: installation key %q: stored key has %d bytes, want %d", name, len(key), size)
	}
	return key, nil
}
