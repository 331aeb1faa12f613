from sglang_sim.launch_server import main

if __name__ == "__main__":
    main()
