package worker

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
)

func TestMsgContextDeadline(t *testing.T) {
	parent, stop := context.WithCancel(context.Background())
	defer stop()
	c := newMsgContext(parent)
	defer c.release()

	c.start(time.Now(), 20*time.Millisecond)
	if _, ok := c.Deadline(); !ok {
		t.Fatal("a message with a timeout has no deadline")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the deadline passed without cancelling the context")
	}
	if !errors.Is(c.Err(), context.DeadlineExceeded) {
		t.Fatalf("Err() = %v, want DeadlineExceeded", c.Err())
	}
	if c.finish() {
		t.Fatal("a timed-out context was offered for reuse")
	}
}

func TestMsgContextReusedAcrossMessages(t *testing.T) {
	c := newMsgContext(context.Background())
	defer c.release()
	// A first message armed the timer for 30ms and finished at once; the
	// second one runs past that moment but within its own deadline.
	c.start(time.Now(), 30*time.Millisecond)
	if !c.finish() {
		t.Fatal("a finished message left the context unusable")
	}
	c.start(time.Now(), time.Hour)
	time.Sleep(60 * time.Millisecond) // stands for the handler's work, running past the first message's deadline
	if c.Err() != nil {
		t.Fatalf("the second message was cancelled at the first one's deadline: %v", c.Err())
	}
	if !c.finish() {
		t.Fatal("context not reusable after an in-time message")
	}
}

func TestMsgContextFollowsParentAndFeedsChildren(t *testing.T) {
	parent, cancelParent := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	c := newMsgContext(parent)
	defer c.release()
	if c.Value(ctxKey{}) != "v" {
		t.Fatal("values of the parent are not visible")
	}
	c.start(time.Now(), 0)
	goroutines := runtime.NumGoroutine()
	child, cancelChild := context.WithTimeout(c, time.Hour)
	defer cancelChild()
	if n := runtime.NumGoroutine(); n > goroutines {
		t.Fatalf("a derived context started %d goroutines", n-goroutines)
	}
	cancelParent()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the parent did not reach a context derived from the message context")
	}
	if !errors.Is(c.Err(), context.Canceled) {
		t.Fatalf("Err() = %v, want Canceled", c.Err())
	}
}

type ctxKey struct{}
