package worker

import (
	"context"
	"testing"
	"time"
)

func TestSemaphoreWaitsForItsMinimum(t *testing.T) {
	s := newSemaphore(4)
	if got := s.acquire(t.Context(), 1, 3, 0, nil); got != 3 {
		t.Fatalf("acquire(1..3) of 4 free = %d, want 3", got)
	}
	got := make(chan int, 1)
	go func() { got <- s.acquire(context.Background(), 3, 8, 0, nil) }()
	eventually(t, "the waiter to queue", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiters) == 1 })
	s.release(1) // 2 free: not enough for the waiter
	select {
	case n := <-got:
		t.Fatalf("waiter took %d slots with 2 free, want it to wait for 3", n)
	default:
	}
	s.release(2)
	if n := <-got; n != 4 {
		t.Fatalf("waiter got %d, want all 4 free", n)
	}
}

func TestSemaphoreServesWaitersInOrder(t *testing.T) {
	s := newSemaphore(1)
	s.acquire(t.Context(), 1, 1, 0, nil)
	first, second := make(chan int, 1), make(chan int, 1)
	go func() { first <- s.acquire(context.Background(), 1, 1, 0, nil) }()
	eventually(t, "the first waiter", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiters) == 1 })
	go func() { second <- s.acquire(context.Background(), 1, 1, 0, nil) }()
	eventually(t, "the second waiter", func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.waiters) == 2 })
	s.release(1)
	if n := <-first; n != 1 {
		t.Fatalf("first waiter got %d", n)
	}
	s.release(1)
	if n := <-second; n != 1 {
		t.Fatalf("second waiter got %d", n)
	}
}

func TestSemaphoreTimeoutTakesWhatIsFree(t *testing.T) {
	s := newSemaphore(4)
	s.acquire(t.Context(), 1, 3, 0, nil) // 1 left
	if n := s.acquire(t.Context(), 2, 8, time.Millisecond, nil); n != 1 {
		t.Fatalf("after the timeout, acquire(2..8) with 1 free = %d, want 1", n)
	}
	if n := s.acquire(t.Context(), 1, 8, time.Millisecond, nil); n != 0 {
		t.Fatalf("acquire with nothing free = %d after its timeout, want 0", n)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if n := s.acquire(ctx, 1, 1, 0, nil); n != 0 {
		t.Fatalf("acquire on a cancelled context = %d, want 0", n)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.waiters) != 0 {
		t.Fatalf("%d waiters left behind", len(s.waiters))
	}
}
