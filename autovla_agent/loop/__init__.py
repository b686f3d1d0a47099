"""The simulator-neutral closed loop: driving loop, agent config, GNSS/IMU/speed localisation, recording."""
