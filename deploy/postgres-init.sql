-- Temporal keeps its own databases beside Nodal's (auto-setup creates the schemas).
CREATE DATABASE temporal;
CREATE DATABASE temporal_visibility;
