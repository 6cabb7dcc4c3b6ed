package client_test

import (
	"context"
	"fmt"
	"io"
	"log"
	"time"

	"github.com/spear-go/spear/client"
)

// Invoke a function of the daemon at $SPEARLET_ADDR, else 127.0.0.1:7480:
// here "echo" of the default configuration. (The example needs a running
// daemon, so it is compiled, not run.)
func ExampleClient_Invoke() {
	c := client.FromEnv("")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := c.Invoke(ctx, "echo", []byte("hello"), client.InvokeOptions{
		Timeout:  5 * time.Second, // also bounds waiting for a free instance
		Metadata: map[string]string{"trace-id": "abc123"},
	})
	if err != nil {
		if client.IsCode(err, "no_instance") {
			log.Fatal("every instance is busy: ", err)
		}
		log.Fatal(err)
	}
	fmt.Printf("%s answered %s\n", res.Instance, res.Payload) // process:echo-1a2b3c4d answered process:echo-1a2b3c4d|hello
}

// Stream a function's output as it is written.
func ExampleClient_InvokeStream() {
	c := client.FromEnv("")
	s, err := c.InvokeStream(context.Background(), "echo", []byte("one two three"), client.InvokeOptions{Method: "stream"})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	if _, err := io.Copy(log.Writer(), s); err != nil { // an error after the first chunk arrives here
		log.Fatal(err)
	}
}
