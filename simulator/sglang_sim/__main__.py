from sglang_sim.launch_server import main

main()
