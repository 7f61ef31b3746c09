package scriptfn

// Commands exposes the command table and scriptCommands to the tests.
var Commands = func() map[string][2]bool {
	out := map[string][2]bool{}
	for c, f := range commands {
		out[c] = [2]bool{f.write, f.denyOOM}
	}
	return out
}()

var ScriptCommands = scriptCommands
