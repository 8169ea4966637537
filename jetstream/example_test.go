package jetstream_test

import (
	"context"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/bigqueue-go/bigqueue"
	bqjs "github.com/bigqueue-go/bigqueue/jetstream"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A producer enqueues locally; the forwarder moves the messages into a
// stream. Drain forwards what there is and returns; a long-running
// program calls Run instead.
func ExampleForwarder_Drain() {
	storeDir, err := os.MkdirTemp("", "example-js-")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(storeDir)
	srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, JetStream: true,
		StoreDir: storeDir, NoLog: true, NoSigs: true})
	if err != nil {
		log.Fatal(err)
	}
	srv.Start()
	defer srv.Shutdown()
	if !srv.ReadyForConnections(10 * time.Second) {
		log.Fatal("server not ready")
	}

	nc, err := nats.Connect(srv.ClientURL(), nats.MaxReconnects(-1), nats.ReconnectBufSize(-1))
	if err != nil {
		log.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "EV", Subjects: []string{"EV.host1"}})
	if err != nil {
		log.Fatal(err)
	}

	q, err := bigqueue.NewQueue(storeDir + "/queue")
	if err != nil {
		log.Fatal(err)
	}
	defer q.Close()
	for _, m := range []string{"one", "two", "three"} {
		if err := q.EnqueueString(m); err != nil {
			log.Fatal(err)
		}
	}
	c, err := q.NewConsumer("jetstream")
	if err != nil {
		log.Fatal(err)
	}
	f, err := bqjs.New(q, c, js, "EV.host1", bqjs.Config{})
	if err != nil {
		log.Fatal(err)
	}
	if err := f.Drain(ctx); err != nil {
		log.Fatal(err)
	}
	s := f.Stats()
	fmt.Printf("forwarded %d, pending %d, next %d\n", s.Forwarded, s.Pending, s.NextSeq)
	msg, err := stream.GetMsg(ctx, 3)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("stream message 3: %s, Nats-Msg-Id is MsgID(3, \"three\"): %v\n", msg.Data, msg.Header.Get(nats.MsgIdHdr) == f.MsgID(3, []byte("three")))
	// Output:
	// forwarded 3, pending 0, next 4
	// stream message 3: three, Nats-Msg-Id is MsgID(3, "three"): true
}
