import './base.css';
import './sweep.css';
