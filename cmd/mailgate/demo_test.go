package main

import (
	"context"
	"io"
	"mailgate/internal/syncbuf"
	"strings"
	"testing"
	"time"
)

func TestDemoHeadless(t *testing.T) {
	inR, inW := io.Pipe()
	var out syncbuf.Buffer
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
