package compare

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain is also the children's main: the harness under test runs this
// test binary again for each job, with ChildEnv set.
func TestMain(m *testing.M) {
	if IsChild(os.Getenv) {
		if err := Child(context.Background(), os.Stdin, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m)
}
