package main

import (
	"bytes"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the demo's concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestDemoHeadless(t *testing.T) {
	inR, inW := io.Pipe()
	var out syncBuffer
	env := &environment{stdin: inR, stdout: &out, stderr: &out, getenv: func(string) string { return "" }}
	done := make(chan int, 1)
	go func() { done <- execute(context.Background(), env, []string{"demo"}) }()

	waitOut := func(want string) {
		t.Helper()
		deadline := time.Now().Add(waitLimit)
		for !strings.Contains(out.String(), want) {
			if time.Now().After(deadline) {
				t.Fatalf("demo output lacks %q:\n%s", want, out.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitOut("Type:")
	io.WriteString(inW, "/mail My parcel never arrived.\n")
	waitOut("My parcel never arrived.")
	io.WriteString(inW, "Sorry! We are sending a new one.\n")
	waitOut("[customer mailbox] new email")
	waitOut("Subject: Re: Question about my order")
	io.WriteString(inW, "/quit\n")
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("demo exited %d", code)
		}
	case <-time.After(waitLimit):
		t.Fatal("demo did not stop after /quit")
	}
	for _, want := range []string{"support@demo.test", "password support", "Casey Customer", "In-Reply-To: <demo-1."} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
}
