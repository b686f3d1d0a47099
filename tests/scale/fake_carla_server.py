"""Stand-in for a CARLA server in the multi-server tests: listens on --port; a client sending b"crash" kills it."""

import argparse
import os
import socket


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("localhost", args.port))
    server.listen(8)
    print(f"fake CARLA server {os.getpid()} listening on {args.port}", flush=True)
    while True:
        conn, _ = server.accept()
        with conn:
            conn.settimeout(2.0)
            try:
                data = conn.recv(16)
            except OSError:
                data = b""
        if data == b"crash":
            print("fake CARLA server crashing", flush=True)
            os._exit(3)


if __name__ == "__main__":
    main()
