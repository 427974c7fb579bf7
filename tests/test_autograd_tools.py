

def test_anomaly_mode_is_there():
    assert callable(nbgrad.autograd.detect_anomaly) and callable(nbgrad.autograd.set_detect_anomaly)
    with nbgrad.autograd.detect_anomaly():
        assert nbgrad.is_anomaly_enabled()
    assert not nbgrad.is_anomaly_enabled()
