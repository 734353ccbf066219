package main

import "testing"

// TestDaemonKelvinSignIsNotKate sends a DMARC-passing email from a local
// part with U+212A (Kelvin sign) and one with U+0130; each must reach
// Userlike as written, never as the ASCII address it folds to in Unicode.
func TestDaemonKelvinSignIsNotKate(t *testing.T) {
	e := newTestEnv(t, "")
	e.deliver(customerMail("\u212Aate@example.test", "K", "kelvin@example.test", "Kelvin", "Hello from the Kelvin sign."))
	e.deliver(customerMail("\u0130rene@example.test", "I", "irene@example.test", "Irene", "Hello from the dotted I."))
	e.start()
	posts := e.ul.waitPosts(2)
	// Different contacts are posted concurrently: compare as a set.
	want := map[string]bool{"\u212Aate@example.test": true, "\u0130rene@example.test": true}
	for _, p := range posts[:2] {
		if !want[p.Email] {
			t.Errorf("a post went to %q, want one of %v", p.Email, want)
		}
		delete(want, p.Email)
	}
}
